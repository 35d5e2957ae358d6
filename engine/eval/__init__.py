"""Scoring a run: base against tuned on held-out prompts, retention of what the model knew, collapse
and likelihood measures, each with the figures that name them."""
