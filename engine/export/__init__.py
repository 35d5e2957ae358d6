"""Export a run to files llama.cpp and Ollama load, each proven before export says "done"."""

from engine.export.pipeline import ExportError, ExportResult, export

__all__ = ["ExportError", "ExportResult", "export"]
