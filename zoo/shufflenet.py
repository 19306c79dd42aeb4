"""shufflenet family (being written)."""
