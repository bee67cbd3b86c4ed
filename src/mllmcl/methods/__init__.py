"""Continual-learning methods, one file each, registered under the name used in configs, the CLI and
results. A method entry is `name`, `name[router]` (a method that takes a router: `mr-lora[prototype]`) or
`name+replay` (a method that trains on its data, plus a replay buffer: `ewc+replay`); `check_method_spec`
validates one when the configuration loads, `build_method` builds it."""
from __future__ import annotations

import re
from dataclasses import dataclass

from mllmcl.context import Context
from mllmcl.errors import UserError
from mllmcl.methods.base import Answers, Method
from mllmcl.registry import Registry

METHODS: Registry[Method] = Registry("method")

# importing the modules registers them (seq_lora before the modules that build on it)
from mllmcl.methods import seq_lora, zero_shot, joint, mr_lora, oracle, replay  # noqa: E402,F401,I001
from mllmcl.methods import ewc, lwf, moelora, o_lora  # noqa: E402,F401,I001

_SPEC = re.compile(r"^(?P<name>[A-Za-z0-9_.-]+?)(?:\[(?P<router>[^\]]*)\])?(?P<replay>\+replay)?$")


@dataclass(frozen=True)
class MethodSpec:
    """A parsed method entry: its registered `name`, the `router` in brackets, whether `+replay` is added,
    and the `label` (the entry as written: its key in results.json)."""

    name: str
    router: str | None
    replay: bool
    label: str


def parse_method_spec(spec: str) -> MethodSpec:
    match = _SPEC.match(spec.strip())
    if not match or match["router"] == "":
        raise UserError(f"method {spec!r}: expected name, name[router] or name+replay, e.g. mr-lora[prototype], "
                        "ewc+replay")
    return MethodSpec(match["name"], match["router"], bool(match["replay"]), spec.strip())


def check_method_spec(spec: str) -> MethodSpec:
    """Parse `spec` and check it against the registries: a known method, a known router for a method that
    takes one, `+replay` only for a method that trains on its data. Raises a UserError naming the entry."""
    from mllmcl.routing import ROUTERS

    parsed = parse_method_spec(spec)
    try:
        method = METHODS.get(parsed.name)
    except UserError as err:
        raise UserError(f"method {spec!r}: {err}") from None
    if parsed.router is not None:
        if not getattr(method, "takes_router", False):
            takes = [n for n in METHODS.names() if getattr(METHODS.get(n), "takes_router", False)]
            raise UserError(f"method {spec!r}: a router in brackets goes only with {', '.join(takes)}")
        try:
            ROUTERS.get(parsed.router)
        except UserError as err:
            raise UserError(f"method {spec!r}: {err}") from None
    if parsed.replay and not getattr(method, "replayable", False):
        able = [n for n in METHODS.names() if getattr(METHODS.get(n), "replayable", False)]
        raise UserError(f"method {spec!r}: +replay applies to the methods that train on their data: {', '.join(able)}")
    return parsed


def check_methods(config) -> None:
    """Every method entry of `config`, and what each method checks of the whole configuration
    (`check_config(config)`, e.g. that MoELoRA's experts divide the LoRA rank)."""
    for spec in config.methods:
        method = METHODS.get(check_method_spec(spec).name)
        check = getattr(method, "check_config", None)
        if check is not None:
            check(config)


def build_method(spec: str, ctx: Context) -> Method:
    """The method of entry `spec` (e.g. `seq-lora`, `mr-lora[mllm]`, `ewc+replay`), named as written."""
    from mllmcl.methods.replay import with_replay

    parsed = check_method_spec(spec)
    factory = METHODS.get(parsed.name)
    if parsed.replay:
        factory = with_replay(factory)
    extra = {"router": parsed.router} if parsed.router is not None else {}
    return factory(ctx, name=parsed.label, **extra)


__all__ = ["Answers", "Context", "METHODS", "Method", "MethodSpec", "build_method", "check_method_spec",
           "parse_method_spec"]
