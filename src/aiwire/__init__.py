"""aiwire."""
