"""The one shape of failure a person can act on: what went wrong, and what to do about it."""

from __future__ import annotations

from typing import Any


class ActionableError(Exception):
    """`reason` says what went wrong and where; `advice` says what to change."""

    def __init__(self, reason: str, advice: str = ""):
        super().__init__(f"{reason} {advice}".strip())
        self.reason = reason
        self.advice = advice

    def __reduce__(self) -> tuple[Any, ...]:
        # Raised in a child process (engine/native/child.py) and re-raised in the parent: rebuilt from
        # its fields, whatever the subclass's constructor takes.
        return _restore, (type(self), self.args, self.__dict__)


def _restore(cls: type[ActionableError], args: tuple[Any, ...], state: dict[str, Any]) -> ActionableError:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error
