"""transformers' first import, made under one lock.

transformers 5 puts a lazy module in `sys.modules` part way through its own `__init__`, and
Python's import lock does not make another thread wait for the rest: `from transformers import
AutoTokenizer` in a second thread then fails with "cannot import name 'AutoTokenizer'" (1 try in 3
here, transformers 5.25, 2026-12-06; hindsight#994 met the same). The TUI reads tokenizers and
configs in several workers at once (the config form's time forecast beside its dataset check, an
export beside an evaluation), and its forecast said "could not be predicted (cannot import name
'AutoTokenizer' ...)". Every engine function that imports transformers or peft (which imports it)
calls `hf_imported()` first; once the first import is whole, names load safely from any thread.
tests/engine/models/test_hf_import.py keeps it so."""

from __future__ import annotations

import threading

_LOCK = threading.Lock()


def hf_imported() -> None:
    """Return once transformers is wholly imported, importing it here if no thread has."""
    with _LOCK:
        import transformers  # noqa: F401
