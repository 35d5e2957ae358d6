"""Datasets: load any common fine-tuning format, validate it, render it through the chat template.

Nothing here imports `datasets`, torch or transformers at import time; the readers that need
`datasets` (Parquet, hub ids) import it when called.
"""

from engine.data.check import DataReport, Segment, check
from engine.data.load import LoadResult, load_conversations
from engine.data.prepare import prepare, split
from engine.data.readers import DatasetError
from engine.data.render import RenderError, render, render_text

__all__ = [
    "DataReport", "DatasetError", "LoadResult", "RenderError", "Segment",
    "check", "load_conversations", "prepare", "render", "render_text", "split",
]
