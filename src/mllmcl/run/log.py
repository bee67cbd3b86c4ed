"""The lines a run prints: one per step (`[seq-lora] 2/5 learned Med in 12.3 s · RS 40.0 Med 91.5 …`), through
a `Log` the caller gives (stderr by default; a sweep prefixes its cell, a worker relays to its parent)."""
from __future__ import annotations

from typing import Callable, Sequence

Log = Callable[[str], None]


def silent(_: str) -> None:
    """The log of a process that does not print (every process but the main one)."""


def accuracy_row(names: Sequence[str], values: Sequence[float]) -> str:
    """`RS 40.0 Med 91.5`: one accuracy per task, as a step's line shows them."""
    return " ".join(f"{n} {v:.1f}" for n, v in zip(names, values))
