"""The synthetic MLLM-CL benchmark (`synth`): procedurally drawn stand-ins for the nine real tasks,
written in the official layout. Task modules are imported on demand (`synth_task`), so importing this
package draws nothing and registers nothing by side effect."""
from __future__ import annotations

import importlib

from mllmcl.data.synth.base import SYNTH_TASKS, SynthItem, SynthTask, item_rng

#: Official task name → module that registers its drawer, in the benchmark's task order per setting.
MODULES: dict[str, dict[str, str]] = {
    "dcl": {"RS": "rs", "Med": "med", "AD": "ad", "Sci": "sci", "Fin": "fin"},
    "acl": {"OCR": "ocr", "Math": "mathlogic", "VP": "vp", "APP": "app"},
}
#: The held-out domain that no method trains on (its test rows only; not a task of any setting).
UNSEEN = {"Unseen": "unseen"}


def synth_task(name: str) -> SynthTask:
    """The registered synthetic task `name` (e.g. "RS", or "Unseen"), importing its module on first use."""
    for modules in (*MODULES.values(), UNSEEN):
        if name in modules:
            importlib.import_module(f"mllmcl.data.synth.{modules[name]}")
            break
    return SYNTH_TASKS.build(name)


__all__ = ["MODULES", "SYNTH_TASKS", "UNSEEN", "SynthItem", "SynthTask", "item_rng", "synth_task"]
