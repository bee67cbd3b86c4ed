"""Continual-learning methods, one file each, registered under the name used in configs, the CLI and
results. `build_method("mr-lora[prototype]", ctx)` passes the bracketed argument (a router) on."""
from __future__ import annotations

from mllmcl.errors import UserError
from mllmcl.methods.base import Answers, Context, Method
from mllmcl.registry import Registry

METHODS: Registry[Method] = Registry("method")

# importing the modules registers them
from mllmcl.methods import joint, mr_lora, oracle, replay, seq_lora, zero_shot  # noqa: E402,F401


def build_method(spec: str, ctx: Context) -> Method:
    """`name` or `name[arg]` (only mr-lora takes an argument: its router)."""
    name, bracket, rest = spec.partition("[")
    if bracket:
        if not rest.endswith("]") or not rest[:-1]:
            raise UserError(f"method {spec!r}: expected name[argument], e.g. mr-lora[prototype]")
        if name != "mr-lora":
            raise UserError(f"method {spec!r}: only mr-lora takes an argument (its router)")
        return METHODS.build(name, ctx, router=rest[:-1], label=spec)
    return METHODS.build(name, ctx)


__all__ = ["Answers", "Context", "METHODS", "Method", "build_method"]
