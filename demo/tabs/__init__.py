"""One module per tab of the app; no tab imports another."""
