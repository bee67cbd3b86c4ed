"""`Settings`: the base of every typed settings block (the run's sections, each method's and router's own
block). Pydantic models that refuse unknown keys, check and freeze their values, and use each field's
docstring as its help text (`mllmcl ls` prints it)."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Settings(BaseModel):
    """A block of settings: unknown keys are errors, values are checked and frozen, and each field's
    docstring is its help text."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True, populate_by_name=True)
