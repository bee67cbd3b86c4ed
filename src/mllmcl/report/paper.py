"""How a run or a sweep compares with the published MLLM-CL tables: what the CPU pilot predicts of the real run.

The paper's numbers ship as data (`paper_mllm_cl.json`, its source named there). A method of ours is matched
to the paper's row of the same method (`seq-lora` is LoRA-FT, `+replay` the starred row); each run's MFN and
BWT are put beside the paper's, raw and normalised by the room between the zero-shot and the Oracle row,
which makes a 3.5M-parameter stand-in and LLaVA-1.5-7B comparable:

    normalised MFN = (MFN - zero-shot) / (Oracle - zero-shot)   (0: no better than the base, 1: the Oracle)
    normalised BWT = BWT / (Oracle - zero-shot)

The ranking of the methods both tables have is compared by Spearman's ρ of the mean MFN, with n stated. The
paper's ability (ACL) rows in the data have no Oracle; there the MR-LoRA row stands in as the upper reference,
and the table says so. Reads results.json files only.
"""
from __future__ import annotations

import json
import statistics
from importlib import resources
from typing import Sequence

from mllmcl.eval.results import Results

PAPER_FILE = "paper_mllm_cl.json"
REFERENCES = ("Zero-shot", "Oracle")
"""Rows that bound the others; shown, not ranked."""
ROWS = {"zero-shot": "Zero-shot", "oracle": "Oracle", "seq-lora": "LoRA-FT", "replay": "LoRA-FT*", "o-lora": "O-LoRA", "moelora": "MoELoRA", "cl-moe": "CL-MoE",
        "hide-llava": "HiDe-LLaVA", "sefe": "SEFE", "disco": "DISCO", "mr-lora": "MR-LoRA"}
"""Our method → the paper's row (`name+replay` → the starred row)."""


def paper_tables() -> dict:
    """The published tables, as shipped with the package."""
    return json.loads(resources.files("mllmcl.report").joinpath(PAPER_FILE).read_text(encoding="utf-8"))


def paper_row(label: str) -> str | None:
    """The paper's row for one of our method labels (`mr-lora[mllm]` → MR-LoRA, `o-lora+replay` → O-LoRA*)."""
    name, replay = label.split("[")[0], label.endswith("+replay")
    row = ROWS.get(name.removesuffix("+replay"))
    return None if row is None else row + ("*" if replay and not row.endswith("*") else "")


def spearman(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Spearman's rank correlation (average ranks for ties); None under 3 pairs or for a constant side."""
    if len(xs) != len(ys) or len(xs) < 3:
        return None

    def ranks(values: Sequence[float]) -> list[float]:
        order = sorted(range(len(values)), key=lambda i: values[i])
        out = [0.0] * len(values)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
                j += 1
            for k in range(i, j + 1):
                out[order[k]] = (i + j) / 2 + 1
            i = j + 1
        return out

    rx, ry = ranks(xs), ranks(ys)
    if len(set(rx)) == 1 or len(set(ry)) == 1:
        return None
    return statistics.correlation(rx, ry)


def _stats(values: Sequence[float]) -> dict:
    values = [v for v in values if v is not None]
    if not values:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "n": len(values)}


def compare(runs: Sequence[Results], setting: str | None = None) -> dict:
    """The comparison of one or more runs (their results, e.g. the cells of a sweep) with the paper's
    table of their setting: per matched method, our MFN and BWT (mean, std, n over the runs), raw and
    normalised, beside the paper's; the zero-shot/Oracle ratio; Spearman's ρ of MFN over the matched methods."""
    if not runs:
        raise ValueError("compare needs at least one run")
    setting = setting or runs[0].run.setting
    tables = paper_tables()
    table = tables.get(setting)
    if table is None:
        raise ValueError(f"the paper has no table for setting {setting!r}")
    published = table["rows"]
    upper = "oracle" if "Oracle" in published else "mr-lora"
    paper_zs, paper_top = published["Zero-shot"]["MFN"], published[paper_row(upper)]["MFN"]
    per_method: dict[str, dict[str, list[float]]] = {}
    ratios = []
    for results in runs:
        methods = results.methods
        zero_shot = results.zero_shot or (methods["zero-shot"].final if "zero-shot" in methods else None)
        if not zero_shot:
            raise ValueError("a run without a zero-shot row cannot be normalised (run the zero-shot method)")
        zs = statistics.fmean(zero_shot)
        top_entry = methods.get(upper) or next((m for k, m in methods.items() if k.startswith(upper)), None)
        top = ((top_entry.metrics or {}) if top_entry else {}).get("MFN")
        room = (top - zs) if top is not None else None
        if top is not None:
            ratios.append(zs / top if top else None)
        for label, entry in methods.items():
            if paper_row(label) is None:
                continue
            metrics = entry.metrics or {}
            mfn, bwt = metrics.get("MFN"), metrics.get("BWT")
            out = per_method.setdefault(label, {"MFN": [], "BWT": [], "nMFN": [], "nBWT": []})
            out["MFN"].append(mfn)
            out["BWT"].append(bwt)
            if room and mfn is not None:
                out["nMFN"].append((mfn - zs) / room)
            if room and bwt is not None:
                out["nBWT"].append(bwt / room)
    paper_room = paper_top - paper_zs
    rows = []
    for label, values in per_method.items():
        paper = published.get(paper_row(label))
        if paper is None:
            continue
        rows.append({"label": label, "paper_row": paper_row(label),
                     "paper": {"MFN": paper.get("MFN"), "BWT": paper.get("BWT"),
                               "nMFN": (paper["MFN"] - paper_zs) / paper_room,
                               "nBWT": paper["BWT"] / paper_room if paper.get("BWT") is not None else None},
                     "ours": {key: _stats(v) for key, v in values.items()}})
    ranked = [r for r in rows if r["ours"]["MFN"]["mean"] is not None and r["paper_row"] not in REFERENCES]
    rho = spearman([r["paper"]["MFN"] for r in ranked], [r["ours"]["MFN"]["mean"] for r in ranked])
    source = "; ".join(filter(None, (tables["source"], table.get("source"))))
    return {"setting": setting, "source": source, "runs": len(runs), "upper": upper,
            "zero_shot_over_upper": {"paper": paper_zs / paper_top, "ours": _stats(ratios)},
            "rows": rows, "spearman_mfn": {"rho": rho, "n": len(ranked)}}


def _cell(stats: dict, digits: int = 2) -> str:
    if stats["mean"] is None:
        return "—"
    return f"{stats['mean']:.{digits}f}" + (f" ± {stats['std']:.{digits}f}" if stats["n"] > 1 else "")


def _num(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def comparison_markdown(comparison: dict) -> str:
    """The comparison as a markdown section: the table, the zero-shot ratio, ρ with its n, the source."""
    upper = "Oracle" if comparison["upper"] == "oracle" else "MR-LoRA (the paper's ACL Oracle is not in the data)"
    ratio = comparison["zero_shot_over_upper"]
    rho = comparison["spearman_mfn"]
    lines = [f"## Against the paper ({comparison['setting'].upper()}, {comparison['runs']} run(s))", "",
             f"Normalised by the room between zero-shot and {upper}: nMFN = (MFN − zero-shot) / (upper − zero-shot), "
             "nBWT = BWT / (upper − zero-shot). Ours: mean ± std over the runs.", "",
             "| method | paper row | MFN paper | MFN ours | BWT paper | BWT ours | nMFN paper | nMFN ours "
             "| nBWT paper | nBWT ours |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in comparison["rows"]:
        p, o = r["paper"], r["ours"]
        lines.append(f"| {r['label']} | {r['paper_row']} | {_num(p['MFN'])} | {_cell(o['MFN'])} | {_num(p['BWT'])} "
                     f"| {_cell(o['BWT'])} | {_num(p['nMFN'])} | {_cell(o['nMFN'])} | {_num(p['nBWT'])} "
                     f"| {_cell(o['nBWT'])} |")
    lines += ["", f"- zero-shot / {comparison['upper'].replace('oracle', 'Oracle')} MFN: paper {ratio['paper']:.2f}, "
                  f"ours {_cell(ratio['ours'])}",
              f"- Spearman ρ of MFN over the {rho['n']} methods both tables have: "
              + (f"{rho['rho']:.2f}" if rho["rho"] is not None else "undefined (fewer than 3 methods)"),
              f"- Source: {comparison['source']}.", ""]
    return "\n".join(lines)
