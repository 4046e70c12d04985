"""The field-trial suite (one module per scenario)."""
