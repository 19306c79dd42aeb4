"""Argument types shared by the benchmark scripts: argparse refuses a value out of range while
parsing, before any work, in one line with exit status 2 (``error: argument --steps: must be at
least 1 (got 0)``); a value that is no number is argparse's own "invalid int value" line."""
from __future__ import annotations

import argparse


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
    """An argparse ``type``: a float above 0 (a time limit)."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive (got {text})")
    return value


positive.__name__ = "float"
