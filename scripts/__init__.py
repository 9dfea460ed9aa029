"""Project maintenance scripts (not shipped)."""
