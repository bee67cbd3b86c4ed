"""The shape of an expert library's manifests (library.json, versions/vNNNN/version.json), checked when they
are read. mllmcl writes them itself, but a library is a folder that users copy, edit and restore from
backups: a damaged manifest must stop `serve`, `expert …` and `bench serve` with one line naming the file and
the key, not with a KeyError deep inside routing. Keys mllmcl does not read are kept as they are (`extra`
allowed), so a library written by a newer mllmcl with more fields still loads."""
from __future__ import annotations

import math
from pathlib import Path, PurePosixPath
from typing import Optional

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr, ValidationError, \
    field_validator

from mllmcl.core.errors import UserError

Number = StrictFloat | StrictInt


class _Shape(BaseModel):
    model_config = ConfigDict(extra="allow")


class ExpertEntry(_Shape):
    """One expert as a version lists it (the fields of `library.ExpertRecord`)."""

    model_config = ConfigDict(extra="forbid")  # ExpertRecord(**entry) takes exactly these
    name: StrictStr
    description: StrictStr
    path: StrictStr
    sha256: StrictStr
    data: StrictStr
    scorer: StrictStr
    max_new_tokens: StrictInt = Field(gt=0)
    heldout: StrictInt = Field(ge=0)
    scores: dict[StrictStr, Number] = Field(default_factory=dict)

    _inside = field_validator("path")(lambda cls, value: _inside_library(value))


class RouterEntry(_Shape):
    kind: StrictStr
    state: StrictStr

    _inside = field_validator("state")(lambda cls, value: _inside_library(value))


def _inside_library(value: str) -> str:
    """A path written relative to the library that stays inside it (no absolute path, no `..`)."""
    path = PurePosixPath(value)
    if not path.parts or path.is_absolute() or ".." in path.parts or "\x00" in value:
        raise ValueError("must be a path inside the library")
    return value


class VersionManifest(_Shape):
    """What `RoutedModel.load` and `expert …` read from a version."""

    version: StrictInt = Field(gt=0)
    parent: Optional[StrictInt] = None
    backbone: StrictStr
    config: dict
    router: RouterEntry
    experts: list[ExpertEntry] = Field(min_length=1)
    threshold: Optional[dict[StrictStr, Number]] = None
    target_frr: Number
    routing: Number

    @field_validator("threshold")
    @classmethod
    def _finite(cls, value: dict | None) -> dict | None:
        if value is not None and not all(math.isfinite(v) for v in value.values()):
            raise ValueError("thresholds must be finite numbers")
        return value


class VersionSummary(_Shape):
    """An entry of library.json's `versions`: what `expert ls` lists."""

    version: StrictInt = Field(gt=0)
    created: StrictStr
    experts: list[StrictStr]
    change: Optional[dict] = None


class PointerMove(_Shape):
    """An entry of library.json's `history`: the pointer moved `to` a version by `action`."""

    time: StrictStr
    action: StrictStr
    to: StrictInt = Field(gt=0)


class LibraryManifest(_Shape):
    """library.json: the pointer (`current`, 0 before the first version) and the current version's manifest."""

    backbone: StrictStr
    current: StrictInt = Field(ge=0)
    version: Optional[VersionManifest]
    versions: list[VersionSummary]
    history: list[PointerMove]


def check_library_manifest(data: dict, path: Path) -> None:
    """Raise a one-line UserError naming `path` and the key when library.json is not as mllmcl writes it."""
    manifest = _validated(LibraryManifest, data, path)
    if (manifest.version is None) != (manifest.current == 0):
        _refuse(path, "current", f"{manifest.current} does not match the version stored beside it")
    if manifest.version is not None and manifest.version.version != manifest.current:
        _refuse(path, "version.version", f"{manifest.version.version}, but current is {manifest.current}")


def check_version_manifest(data: object, path: Path) -> None:
    """The same for a version.json."""
    _validated(VersionManifest, data, path)


def _validated(model: type[BaseModel], data: object, path: Path) -> BaseModel:
    try:
        return model.model_validate(data)
    except ValidationError as err:
        first = err.errors(include_url=False)[0]
        key = ".".join(str(part) for part in first["loc"])
        shown = repr(first.get("input"))
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        _refuse(path, key, f"{first['msg'].removeprefix('Value error, ')}, got {shown}")


def _refuse(path: Path, key: str, message: str) -> None:
    where = f"key {key!r}: " if key else ""
    raise UserError(f"{path}: not a library manifest mllmcl can read ({where}{message}); it was changed "
                    "outside mllmcl: restore it from a backup")
