"""What the command groups share to declare options: argparse value types that explain a bad value, and the
defaults read from where they are declared (a settings class or a function), never written twice."""
from __future__ import annotations

import argparse
import dataclasses
import inspect
from typing import Any, Callable


def default_of(owner: Any, name: str) -> Any:
    """The default of field `name` of a dataclass or pydantic model, or of parameter `name` of a function."""
    if dataclasses.is_dataclass(owner):
        field = {f.name: f for f in dataclasses.fields(owner)}[name]
        return field.default_factory() if field.default is dataclasses.MISSING else field.default
    fields = getattr(owner, "model_fields", None)
    if fields is not None:
        return fields[name].get_default(call_default_factory=True)
    return inspect.signature(owner).parameters[name].default


def int_at_least(minimum: int, what: str) -> Callable[[str], int]:
    """An argparse type: a whole number >= `minimum`, or an error saying it must be `what`."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text}")
        return value
    return parse


positive_int = int_at_least(1, "a positive integer")
non_negative_int = int_at_least(0, "a whole number >= 0")


def fractions(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers in [0, 1], got {text!r}") from None
    if not values or not all(0 <= v <= 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers in [0, 1], got {text!r}")
    return values


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value
