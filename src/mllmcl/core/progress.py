"""Progress bars and log lines, drawn on this terminal or relayed from a worker process.

The engine's long loops (training, generation) ask `progress_bar` for a bar. In a plain process that is a
tqdm bar. In a worker of a parallel run (run/jobs.py) it is a `RelayedBar` that sends its state to the
parent, which draws every worker's bars together with the run's log lines (`BarBoard`), so two processes
never write over each other's lines on the terminal.
"""
from __future__ import annotations

import itertools
import os
import time
from typing import Callable

from tqdm.auto import tqdm

Send = Callable[[tuple], None]

_relay: Send | None = None  # set in a worker process: where its bars and log lines go
_ids = itertools.count()


def relay_to(send: Send | None) -> None:
    """Send this process's bars to `send` (a worker of a parallel run); None draws them here again."""
    global _relay
    _relay = send


def progress_bar(total: int, desc: str, unit: str):
    """A bar with tqdm's `update`, `set_postfix` and `close`: drawn here, or relayed to the parent."""
    if _relay is not None:
        return RelayedBar(_relay, total, desc, unit)
    return tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, leave=False)


def write_line(line: str) -> None:
    """Print a log line without breaking the bars on the terminal (tqdm moves them below it)."""
    tqdm.write(line)


class RelayedBar:
    """A worker's bar: the calls the engine makes, sent to the parent at most every `interval` seconds
    (and always when it closes)."""

    interval = 0.25

    def __init__(self, send: Send, total: int, desc: str, unit: str):
        self.send, self.n, self.postfix, self.last = send, 0, "", 0.0
        self.key = (os.getpid(), next(_ids))
        send(("bar", self.key, desc, unit, total, 0, ""))

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            self.send(("bar-update", self.key, self.n, self.postfix))

    def set_postfix(self, refresh: bool = True, **values) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def close(self) -> None:
        self.send(("bar-close", self.key))


class BarBoard:
    """The parent's side: one tqdm bar per open worker bar, drawn in this process."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.bars: dict = {}

    def handle(self, message: tuple) -> bool:
        """Draw a bar message; False for a message that is not about bars."""
        kind = message[0]
        if kind == "bar":
            _, key, desc, unit, total, _, _ = message
            if self.enabled:
                self.bars[key] = tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, leave=False)
        elif kind == "bar-update":
            _, key, n, postfix = message
            bar = self.bars.get(key)
            if bar is not None:
                bar.set_postfix_str(postfix, refresh=False)
                bar.update(n - bar.n)  # tqdm's own rate and time left, from the worker's count
        elif kind == "bar-close":
            bar = self.bars.pop(message[1], None)
            if bar is not None:
                bar.close()
        else:
            return False
        return True

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
        self.bars.clear()
