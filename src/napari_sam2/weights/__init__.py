"""Checkpoints: reading and loading weights into a model (loading), and the
registry of downloadable checkpoints with its cache (registry)."""
