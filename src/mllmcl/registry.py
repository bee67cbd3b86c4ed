"""A named table of factories: the one lookup mechanism behind backbones, methods, benchmarks,
scorers and routers. Keys are the user-facing names used in configs, the CLI and results. An entry may
declare its settings block (a `mllmcl.config.Settings` model), which the run configuration composes."""
from __future__ import annotations

from typing import Callable, Generic, TypeVar

from mllmcl.errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps a user-facing name to a factory and a one-line description."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, tuple[Callable[..., T], str]] = {}
        self._settings: dict[str, type] = {}

    def register(self, name: str, description: str = "", settings: type | None = None
                 ) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator: register `factory` under `name`, with its one-line `description` and, optionally, the
        settings block it reads (`settings`)."""
        def decorate(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = (factory, description or (factory.__doc__ or "").strip().split("\n")[0])
            if settings is not None:
                self._settings[name] = settings
            return factory

        return decorate

    def get(self, name: str) -> Callable[..., T]:
        try:
            return self._entries[name][0]
        except KeyError:
            raise UserError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}") from None

    def build(self, name: str, *args, **kwargs) -> T:
        return self.get(name)(*args, **kwargs)

    def settings(self) -> dict[str, type]:
        """Name → settings block, for the entries that declare one."""
        return dict(self._settings)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def describe(self) -> list[tuple[str, str]]:
        return [(name, self._entries[name][1]) for name in self.names()]
