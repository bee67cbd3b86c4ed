"""The settings of serving and of changing an expert library, with their defaults in one place (the CLI
reads them from here). Plain data, no torch: `mllmcl --help` shows them without loading a model."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServeSettings:
    """Limits and options of one server."""

    api_key: str | None = None
    max_tokens: int = 256          # cap on a request's max_tokens
    default_max_tokens: int = 32   # when a request names none
    max_image_bytes: int = 8 * 2**20
    max_image_pixels: int = 4096 * 4096
    max_batch: int = 32
    max_wait: float = 0.1          # at most this long a batch waits for the clients the last one answered
    watch: float = 2.0             # seconds between checks of library.json (0: only POST /v1/library/reload)
    fallback: bool = True
    threads: int | None = None     # torch threads: None keeps the library's run setting, 0 takes every core

    @property
    def max_body_bytes(self) -> int:
        return self.max_image_bytes * 4 // 3 + 2**20  # one base64 image and the rest of the request


@dataclass(frozen=True)
class GateSettings:
    """The regression gate a library change passes (serve/gate.py): no existing expert's held-out accuracy
    (with the router's pick) drops by more than `max_drop` points, at least `min_routing` % of the held-out
    rows reach their own expert, and an added expert answers its own held-out rows at least `min_gain`
    points better than the base model does."""

    max_drop: float = 1.0
    min_routing: float = 95.0
    min_gain: float = 5.0


@dataclass(frozen=True)
class ExpertSettings:
    """How a library takes an expert in: from a run (`library export`: its routed `method`) or new
    (`expert add`: scored by `scorer`); `heldout` rows kept per expert to measure it, and the fallback
    threshold calibrated to a false-reject rate of `target_frr` on them (0: no fallback)."""

    method: str = "mr-lora"
    scorer: str = "fin"
    heldout: int = 100
    target_frr: float = 0.05
