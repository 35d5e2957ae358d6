"""Does a reply hold the expected answer? The one check evaluation, retention and GRPO's answer reward share.

It lives with the data, beside the prompt files whose `expected` fields it reads, so that
scoring (engine.eval) and training (engine.train's rewards) use the same rule without either
depending on the other.
"""

from __future__ import annotations

import re

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
                "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty")


def answer_matches(reply: str, expected: str) -> bool:
    """Does `reply` contain the `expected` answer? Case-insensitive, with whitespace runs as one space.

    A number must stand as a whole number: expected "4" matches "2 + 2 = 4.", "4.0" and "four" (small
    models often spell out 0 to 20), not "14", "4.5" or "0.4"; "1,000" matches "1000". Text must
    stand as whole words at its ends, so "Rome" does not match "Romeo" nor "red" "covered"; it may
    span several words ("au revoir") and end in punctuation.
    """
    reply = " ".join(reply.split()).lower()
    expected = " ".join(expected.split()).lower()
    if not expected:
        return False
    if _NUMBER.fullmatch(expected):
        zeros = r"(?:\.0+)?" if "." not in expected else ""
        if re.search(rf"(?<![\d.]){re.escape(expected)}{zeros}(?!\.?\d)", _THOUSANDS.sub("", reply)):
            return True
        if expected.isdigit() and int(expected) < len(NUMBER_WORDS):
            return re.search(rf"\b{NUMBER_WORDS[int(expected)]}\b", reply) is not None
        return False
    start = r"(?<!\w)" if re.match(r"\w", expected) else ""
    end = r"(?!\w)" if re.search(r"\w$", expected) else ""
    return re.search(start + re.escape(expected) + end, reply) is not None
