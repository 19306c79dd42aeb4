"""densenet family (being written)."""
