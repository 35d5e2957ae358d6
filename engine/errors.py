"""The one shape of failure a person can act on: what went wrong, and what to do about it."""

from __future__ import annotations


class ActionableError(Exception):
    """`reason` says what went wrong and where; `advice` says what to change."""

    def __init__(self, reason: str, advice: str = ""):
        super().__init__(f"{reason} {advice}".strip())
        self.reason = reason
        self.advice = advice
