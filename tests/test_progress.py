"""Bars of a worker process, relayed to the parent and drawn there (utils/progress.py)."""
from __future__ import annotations

from mllmcl.core import progress
from mllmcl.core.progress import BarBoard, RelayedBar, progress_bar, relay_to


def test_a_relayed_bar_is_drawn_by_the_parent_with_the_workers_count_and_postfix(monkeypatch):
    sent: list[tuple] = []
    monkeypatch.setattr(RelayedBar, "interval", 0.0)  # send every update
    relay_to(sent.append)
    try:
        bar = progress_bar(10, "expert ← RS", "step")
        assert isinstance(bar, RelayedBar)
        bar.update(3)
        bar.set_postfix(loss="0.512", sps="88", refresh=False)
        bar.update(4)
    finally:
        relay_to(None)
    board = BarBoard(enabled=True)
    for message in sent:
        assert board.handle(message)
    drawn = board.bars[bar.key]
    assert (drawn.n, drawn.total, drawn.desc) == (7, 10, "expert ← RS") and drawn.postfix == "loss=0.512, sps=88"
    bar.close()
    assert board.handle(sent[-1]) and bar.key not in board.bars
    assert not board.handle(("log", "a line")) and not board.handle(("step", "seq-lora", {}, 1))


def test_without_a_relay_bars_are_tqdm_bars_on_this_terminal():
    assert progress._relay is None
    bar = progress_bar(5, "generate", "sample")
    try:
        assert type(bar).__module__.startswith("tqdm")
    finally:
        bar.close()
