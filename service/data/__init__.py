"""Data on disk: atomic writes (and, at integration, CSV reading and sample data)."""
