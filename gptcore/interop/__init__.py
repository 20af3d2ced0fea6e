"""Reading models trained elsewhere into gptcore checkpoints."""
