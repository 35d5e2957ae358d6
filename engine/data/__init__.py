"""Datasets: load any common fine-tuning format, validate it, render it through the chat template."""
