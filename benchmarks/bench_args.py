"""Argument types shared by the benchmark scripts: argparse refuses a value out of range while
parsing, before any work, in one line with exit status 2 (``error: argument --steps: must be at
least 1 (got 0)``); a value that is no number is argparse's own "invalid int value" line."""
from __future__ import annotations

import argparse
import math


def at_least(low: float, kind: type = int):
    """An argparse ``type``: ``kind(text)``, refused below ``low`` (NaN too)."""
    def convert(text: str):
        value = kind(text)
        if not value >= low:
            raise argparse.ArgumentTypeError(f"must be at least {low} (got {text})")
        return value
    convert.__name__ = kind.__name__  # argparse's "invalid <name> value" line
    return convert


def positive(text: str) -> float:
    """An argparse ``type``: a finite float above 0 (a time limit, a number of epochs)."""
    value = float(text)
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a positive number (got {text})")
    return value


positive.__name__ = "float"


def counts(text: str) -> list[int]:
    """An argparse ``type``: comma-separated integers >= 1 (``8,16,32``)."""
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"comma-separated integers >= 1, e.g. 8,16,32 (got {text!r})")
    return values
