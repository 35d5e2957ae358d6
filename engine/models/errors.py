"""The one error every model problem becomes, and the "did you mean" hint its messages share.

It sits apart from the loader so that `engine.models.embedded`, which the loader calls to convert the
embedded model, can raise it without importing the loader back.
"""

from __future__ import annotations

from engine.errors import ActionableError
from engine.hardware.catalog import load_catalog


class ModelLoadError(ActionableError):
    """A model that cannot be resolved or loaded."""


def did_you_mean(text: str) -> str:
    """" Did you mean 'x'?" for the closest catalog id or hub id, or "" when none is close."""
    import difflib

    known = [s.id for s in load_catalog()] + [s.hub_id for s in load_catalog()]
    close = difflib.get_close_matches(text, known, n=1, cutoff=0.6)
    return f" Did you mean {close[0]!r}?" if close else ""
