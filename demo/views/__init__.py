"""What the tabs draw: HTML views, figures, explanations and how tokens are shown."""
