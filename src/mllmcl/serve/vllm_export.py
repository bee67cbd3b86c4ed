"""`mllmcl library export --format vllm`: an expert library's experts as adapters that vLLM's multi-LoRA serving
loads (`vllm serve BASE --enable-lora --lora-modules NAME=PATH …`), so a GPU engine answers while the
`mllmcl` front routes (`mllmcl serve --backend vllm`).

vLLM takes LoRA weights on the language model's linear layers in peft's layout, and refuses
`modules_to_save` (a full per-adapter copy of a module) and most vision-tower LoRAs. So each expert is split
into its parts:

- `language`: LoRA on the language model's linears: kept;
- `lm_head`: LoRA on the output head (the tiny recipe's; the 7B profiles leave the head alone): kept unless
  `lm_head=False`, as vLLM takes it only for some models;
- `vision`: LoRA on the vision encoder (ability experts of the 7B profiles): dropped;
- `projector`: the expert's projector copy (`modules_to_save`): dropped, so the expert answers through the
  base model's projector, as it would in vLLM.

Dropping changes the answers, so the export measures it: each expert answers its own held-out rows with the
whole adapter and with the exported one (loaded back through peft). An export that costs an expert more than
`max_drop` points (the gate's 1 by default) is refused; otherwise the cost is printed and written to
`mllmcl_vllm.json` beside the adapters, with the `vllm serve` command that matches. For LLaVA-1.5, whose
checkpoints have no chat template, `chat_template.jinja` reproduces the prompt the experts were trained on."""
from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

from safetensors import safe_open
from safetensors.torch import save_file

from mllmcl.cl.context import adapter_name
from mllmcl.core.errors import UserError
from mllmcl.core.io import is_dir, read_json, write_json_atomic, write_text_atomic
from mllmcl.engine.adapters import delete_adapter, load_adapter
from mllmcl.models.families import FAMILIES
from mllmcl.eval import get_scorer
from mllmcl.serve.gate import accuracy
from mllmcl.serve.library import Library
from mllmcl.serve.settings import GateSettings
from mllmcl.serve.routed import RoutedModel, ServedExpert

PARTS = ("language", "lm_head", "vision", "projector")
MANIFEST = "mllmcl_vllm.json"
TEMPLATE = "chat_template.jinja"
_PREFIX = "base_model.model."


def part_of(key: str, language: str) -> tuple[str, str]:
    """(part, module) of one tensor of a saved peft adapter (see the module docstring)."""
    for marker in (".lora_A.", ".lora_B."):
        if marker in key:
            module = key.split(marker)[0].removeprefix(_PREFIX)
            if module == "lm_head" or module.endswith(".lm_head"):
                return "lm_head", module
            return ("language" if f".{language}." in f".{module}." else "vision"), module
    return "projector", key.removeprefix(_PREFIX)


@dataclass(frozen=True)
class Split:
    """One expert's tensors by part, and the modules the kept LoRA tensors adapt."""

    kept: dict
    dropped: dict[str, int]   # part -> parameters
    kept_parameters: int
    modules: list[str]


def split_adapter(folder: Path, language: str, lm_head: bool) -> Split:
    kept, dropped, modules, count = {}, {p: 0 for p in PARTS}, set(), 0
    with safe_open(str(folder / "adapter_model.safetensors"), "pt") as weights:
        for key in weights.keys():
            part, module = part_of(key, language)
            tensor = weights.get_tensor(key)
            if part == "language" or (part == "lm_head" and lm_head):
                kept[key] = tensor.contiguous()
                modules.add(module)
                count += tensor.numel()
            else:
                dropped[part] += tensor.numel()
    return Split(kept, {p: n for p, n in dropped.items() if n}, count, sorted(modules))


def export_vllm(library: str | Path, out: str | Path, lm_head: bool = True, max_drop: float = GateSettings.max_drop,
                log: Callable[[str], None] = print) -> dict:
    """Write every expert of `library`'s current version to `out/<name>/` as a vLLM-loadable peft LoRA, then
    `out/mllmcl_vllm.json` (what each kept and dropped, the held-out accuracy before and after, the command);
    returns that manifest. Refused, with nothing written, when what is dropped costs an expert more than
    `max_drop` points on its held-out rows. `out` must be new or empty; it appears whole or not at all."""
    library, out = Path(library), Path(out)
    if not Library.exists(library):
        raise UserError(f"{library}: not an expert library (library.json); build one with "
                        "`mllmcl library export --run RUN --out LIB`")
    if out.exists() and (not is_dir(out) or any(out.iterdir())):
        raise UserError(f"{out}: exists and is not an empty folder; name a new one")
    lib = Library(library)
    model = RoutedModel.from_library(lib, fallback=False)
    family = FAMILIES.get(model.backbone.family)
    records = {r.name: r for r in lib.experts()}
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        experts = {}
        for expert in model.experts:
            experts[expert.name] = _export_one(expert, staging / expert.name, family.language, lm_head)
            if experts[expert.name]["dropped"]:
                rows = lib.heldout(records[expert.name])
                experts[expert.name]["heldout"] = _measure(model, expert, staging / expert.name, rows,
                                                           records[expert.name])
            log(_line(expert.name, experts[expert.name]))
        _refuse_costly(experts, max_drop, library)
        template = None
        if family.chat == "vicuna":
            template = staging / TEMPLATE
            write_text_atomic(template, model.backbone.template.jinja(model.backbone.processor.tokenizer.eos_token))
        manifest = {"format": 1, "library": str(library.resolve()), "version": model.version,
                    "backbone": model.backbone.name, "family": model.backbone.family, "lm_head": lm_head,
                    "experts": experts}
        manifest["command"] = vllm_command(model, out, experts, template is not None)
        write_json_atomic(staging / MANIFEST, manifest)
        if out.exists():
            out.rmdir()
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log(f"wrote {out}; serve it with:\n  {manifest['command']}")
    return manifest


def _refuse_costly(experts: dict, max_drop: float, library: Path) -> None:
    costly = {name: e["heldout"] for name, e in experts.items() if e.get("heldout") and
              -e["heldout"]["change"] > max_drop + 1e-9}
    if costly:
        detail = ", ".join(f"{name} {h['whole']:.2f} -> {h['exported']:.2f}" for name, h in costly.items())
        parts = sorted({p for name in costly for p in experts[name]["dropped"]})
        raise UserError(f"{library}: without their {' and '.join(parts)} the experts lose more than {max_drop:g} "
                        f"points on their held-out rows ({detail}); train the experts for vLLM without them (e.g. "
                        "lora.projector=false), or accept the loss with --max-drop")


def _export_one(expert: ServedExpert, target: Path, language: str, lm_head: bool) -> dict:
    split = split_adapter(expert.folder, language, lm_head)
    if not split.kept:
        raise UserError(f"{expert.folder}: expert {expert.name!r} has no LoRA on the language model to export")
    config = read_json(expert.folder / "adapter_config.json", "adapter config")
    config.update(target_modules=split.modules, modules_to_save=None)
    recipe_file = expert.folder / "mllmcl_recipe.json"
    recipe = read_json(recipe_file, "recipe") if recipe_file.exists() else None
    target.mkdir(parents=True)
    save_file(split.kept, str(target / "adapter_model.safetensors"), metadata={"format": "pt"})
    write_json_atomic(target / "adapter_config.json", config)
    if recipe is not None:  # so that mllmcl loads the export back (the measurement below)
        write_json_atomic(target / "mllmcl_recipe.json", {**recipe, "projector": False, "vision": False,
                                                          "lm_head": bool(lm_head and recipe.get("lm_head"))})
    return {"path": expert.name, "rank": config.get("r"), "parameters": split.kept_parameters,
            "dropped": split.dropped}


def _measure(model: RoutedModel, expert: ServedExpert, folder: Path, rows: Sequence, record) -> dict:
    """The expert's held-out accuracy with its whole adapter and with the exported one."""
    if not rows:
        return {}
    queries = [s.query for s in rows]
    whole = model.answer_queries(queries, record.max_new_tokens, [expert.name] * len(rows)).texts
    name = adapter_name("vllm", expert.name)
    load_adapter(model.backbone, name, folder)
    try:
        exported = RoutedModel(model.ctx, model.router, [replace(expert, adapter=name)], None, model.source)
        texts = exported.answer_queries(queries, record.max_new_tokens, [expert.name] * len(rows)).texts
    finally:
        delete_adapter(model.backbone, name)
    scorer = get_scorer(record.scorer)
    before, after = accuracy(scorer, rows, whole), accuracy(scorer, rows, texts)
    return {"n": len(rows), "whole": before, "exported": after, "change": round(after - before, 4)}


def vllm_command(model: RoutedModel, out: Path, experts: dict, template: bool) -> str:
    base = getattr(model.backbone.base_model.config, "_name_or_path", "") or "BASE"
    modules = " ".join(f"{name}={out / e['path']}" for name, e in experts.items())
    rank = max(e["rank"] or 0 for e in experts.values())
    rank = next(r for r in (8, 16, 32, 64, 128, 256, 320, 512) if r >= rank) if rank <= 512 else rank
    parts = [f"vllm serve {base}", "--enable-lora", f"--max-lora-rank {rank}", f"--max-loras {len(experts)}",
             f"--lora-modules {modules}"]
    if template:
        parts.append(f"--chat-template {out / TEMPLATE}")
    return " ".join(parts)


def _line(name: str, entry: dict) -> str:
    dropped = ", ".join(f"{part} ({n:,} parameters)" for part, n in entry["dropped"].items()) or "nothing"
    line = f"{name}: kept {entry['parameters']:,} LoRA parameters, dropped {dropped}"
    held = entry.get("heldout")
    if held:
        line += (f"; held-out accuracy {held['whole']:.2f} -> {held['exported']:.2f} "
                 f"({held['change']:+.2f} points, n = {held['n']})")
    return line


__all__ = ["MANIFEST", "PARTS", "export_vllm", "part_of", "split_adapter", "vllm_command"]
