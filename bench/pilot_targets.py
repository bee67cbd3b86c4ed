"""Check the pilot's calibration targets on a sweep (or run) folder of the default settings.

The stand-in is calibrated on three rows only (zero-shot, seq-lora, the Oracle) and on validation rows
(`eval.split=val`); every other method is held out. Each target is the mean over the runs (task orders):

    zero-shot MFN / Oracle MFN                     in [0.35, 0.65]     (LLaVA-1.5-7B: 0.50)
    Oracle MFN                                     <= 90               (headroom for methods to differ)
    seq-lora (MFN - zero-shot) / (Oracle - zero-shot)   in [0.35, 0.70]     (0.52)
    seq-lora BWT / (Oracle - zero-shot)            in [-0.60, -0.25]   (-0.43)
    seq-lora final format-valid rate, every task   >= 90%
    MR-LoRA (default router) MFN / Oracle MFN      >= 0.98
    mr-lora[mllm] routing at the last stage        >= 97%

    python bench/pilot_targets.py runs/calibrate            # a sweep folder (its runs/ cells) or run folders
"""
from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from mllmcl.report import load_results


def _runs(paths: list[str]) -> list[dict]:
    runs = []
    for path in map(Path, paths):
        cells = sorted(p for p in (path / "runs").iterdir() if (p / "results.json").is_file()) \
            if (path / "runs").is_dir() else [path]
        runs += [load_results(cell) for cell in cells]
    return runs


def targets(runs: list) -> list[tuple[str, str, float | None, bool | None]]:
    """(name, bound, mean value over the runs, met?) per target; None where the runs lack the method."""
    def per_run(fn):
        values = []
        for r in runs:
            try:
                values.append(fn(r.methods, statistics.fmean(r.zero_shot)))
            except (KeyError, TypeError, AttributeError, ZeroDivisionError):
                return None
        return statistics.fmean(values)

    mfn = lambda m, name: m[name].metrics["MFN"]  # noqa: E731
    room = lambda m, zs: mfn(m, "oracle") - zs  # noqa: E731
    rows = [
        ("zero-shot / Oracle MFN", "[0.35, 0.65]", per_run(lambda m, zs: zs / mfn(m, "oracle")), lambda v: 0.35 <= v <= 0.65),
        ("Oracle MFN", "<= 90", per_run(lambda m, zs: mfn(m, "oracle")), lambda v: v <= 90),
        ("seq-lora normalised MFN", "[0.35, 0.70]", per_run(lambda m, zs: (mfn(m, "seq-lora") - zs) / room(m, zs)),
         lambda v: 0.35 <= v <= 0.70),
        ("seq-lora normalised BWT", "[-0.60, -0.25]",
         per_run(lambda m, zs: m["seq-lora"].metrics["BWT"] / room(m, zs)), lambda v: -0.60 <= v <= -0.25),
        ("seq-lora final format-valid, worst task (%)", ">= 90",
         per_run(lambda m, zs: min(m["seq-lora"].final_format_valid)), lambda v: v >= 90),
        ("mr-lora MFN / Oracle MFN", ">= 0.98", per_run(lambda m, zs: mfn(m, "mr-lora") / mfn(m, "oracle")),
         lambda v: v >= 0.98),
        ("mr-lora[mllm] routing, last stage (%)", ">= 97",
         per_run(lambda m, zs: m["mr-lora[mllm]"].routing.stages[-1].accuracy), lambda v: v >= 97),
    ]
    return [(name, bound, value, None if value is None else check(value)) for name, bound, value, check in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", help="sweep folders (their runs/ cells are read) or run folders")
    args = parser.parse_args()
    runs = _runs(args.folders)
    print(f"{len(runs)} run(s); split {', '.join(sorted({r.run.split or '?' for r in runs}))}")
    for name, bound, value, met in targets(runs):
        shown = "—" if value is None else f"{value:.3f}"
        print(f"  {name:<45} {bound:>15} {shown:>9}  {'' if met is None else ('ok' if met else 'MISSED')}")


if __name__ == "__main__":
    main()
