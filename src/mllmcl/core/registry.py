"""A named table: the one lookup mechanism behind backbones, methods, routers, scorers and synthetic tasks.
Keys are the user-facing names used in configs, the CLI and results. An entry is a factory (scorers,
synthetic tasks: `register` as a decorator, `build`) or plain data (the catalogs of backbones, methods and
routers: `add`, `get`), with a one-line description and, optionally, the settings block it reads (a
`mllmcl.core.settings.Settings` model), which the run configuration composes."""
from __future__ import annotations

from typing import Any, Callable, Generic, TypeVar

from mllmcl.core.errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps a user-facing name to an entry and a one-line description."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, tuple[T, str]] = {}
        self._settings: dict[str, type] = {}

    def add(self, name: str, entry: T, description: str, settings: type | None = None) -> T:
        """Enter `entry` under `name`, with its one-line `description` and, optionally, the settings block it
        reads (`settings`)."""
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = (entry, description)
        if settings is not None:
            self._settings[name] = settings
        return entry

    def register(self, name: str, description: str = "", settings: type | None = None) -> Callable[[T], T]:
        """Decorator: `add` the decorated factory (its docstring's first line is the default description)."""
        def decorate(factory: T) -> T:
            return self.add(name, factory, description or (factory.__doc__ or "").strip().split("\n")[0], settings)

        return decorate

    def get(self, name: str) -> T:
        try:
            return self._entries[name][0]
        except KeyError:
            raise UserError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}") from None

    def build(self, name: str, *args, **kwargs) -> Any:
        """Call the factory entered under `name`."""
        return self.get(name)(*args, **kwargs)  # type: ignore[operator]

    def settings(self) -> dict[str, type]:
        """Name → settings block, for the entries that declare one."""
        return dict(self._settings)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def describe(self) -> list[tuple[str, str]]:
        return [(name, self._entries[name][1]) for name in self.names()]
