"""The backbones there are, as data: each kind's name and one-line description (`mllmcl ls`), and the
check of a backbone name that the run configuration makes before anything loads (no torch here).
`models/load.py` loads them."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mllmcl.core.errors import UserError
from mllmcl.core.registry import Registry


@dataclass(frozen=True)
class BackboneKind:
    """A kind of backbone: whether its name carries a path (`hf:<path>`)."""

    takes_path: bool = False


BACKBONES: Registry[BackboneKind] = Registry("backbone")
BACKBONES.add("tiny", BackboneKind(), "embedded tiny LLaVA (CLIP + Llama), pretrained by mllmcl, ships with the package")
BACKBONES.add("hf", BackboneKind(takes_path=True),
              "hf:<local path>: a checkpoint saved by transformers, of a family below (e.g. llava-1.5-7b-hf)")


def parse_backbone(name: str) -> tuple[str, str]:
    """`tiny` → ("tiny", ""), `hf:/models/llava` → ("hf", "/models/llava"); a UserError for an unknown kind,
    a path where none goes, or none where one must."""
    kind, _, path = name.partition(":")
    if BACKBONES.get(kind).takes_path:
        if not path:
            raise UserError(f"backbone '{kind}:' needs a path, e.g. hf:/models/llava-1.5-7b-hf")
    elif path:
        raise UserError(f"backbone {name!r}: only 'hf:' takes a path")
    return kind, path


def check_backbone(name: str) -> None:
    """A backbone name that can load: a known kind, and for `hf:<path>` an existing folder."""
    kind, path = parse_backbone(name)
    if path and not Path(path).expanduser().is_dir():
        raise UserError(f"backbone {name!r}: no checkpoint folder at {path!r}")
