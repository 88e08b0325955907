"""Evaluation metrics for generated audio (see the module docstrings for sources)."""
