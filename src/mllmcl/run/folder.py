"""A run folder (`--out`) and what resuming one needs:

    config.yaml         the resolved configuration (a rerun must match it)
    results.json        the results so far (eval/results.py), rewritten after every step
    predictions/<method>/<step>/<task>.jsonl
    state/<method>/step<k>/     each method's state after its last finished step (kept at the end: it is the
                        trained model — seq-lora's adapter, mr-lora's router)
    experts/            MR-LoRA's per-task experts (or a folder shared by a sweep's runs)
    report.md, heatmaps/
"""
from __future__ import annotations

from pathlib import Path

from mllmcl.cl.config import RunConfig, build_config, read_yaml, to_dict
from mllmcl.cl.context import Context
from mllmcl.cl.methods.catalog import METHODS, parse_method_spec
from mllmcl.core.errors import UserError
from mllmcl.core.io import is_file, slug
from mllmcl.core.parallel import barrier
from mllmcl.eval.results import Results


class RunFolder:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.results_file = self.path / "results.json"

    def predictions(self, method: str, step: str) -> Path:
        return self.path / "predictions" / slug(method) / step

    def state(self, method: str, step: int) -> Path:
        return self.path / "state" / slug(method) / f"step{step}"

    def experts(self, seed: int) -> Path:
        """Where MR-LoRA's experts of this run are: its own `experts/`, or, for a cell of a sweep
        (`SWEEP/runs/<cell>`), the folder the sweep shares among the orders of `seed` (run/sweep.py)."""
        own = self.path / "experts"
        shared = self.path.parent.parent / "experts" / f"s{seed}"
        if not own.is_dir() and self.path.parent.name == "runs" and shared.is_dir():
            return shared
        return own

    def load(self) -> Results | None:
        """The folder's results, None when it has none yet; a damaged results.json is an error naming it."""
        if not is_file(self.results_file):
            return None
        try:
            return Results.load(self.results_file)
        except UserError as err:
            raise UserError(f"{err} (not a results.json of mllmcl run as this version writes it); move it away to "
                            "start afresh") from None

    def finished_steps(self) -> Results | None:
        """The results of the folder if it holds a finished step (the zero-shot row at least), else None:
        only such a folder's configuration binds a rerun. A run that failed before its first step leaves
        nothing that blocks the corrected command."""
        results = self.load()
        return results if results and results.zero_shot is not None else None

    def write(self, ctx: Context, results: Results) -> None:
        """results.json, rewritten atomically by the main process; every process waits until it is there."""
        if ctx.main:
            results.write(self.results_file)
        barrier(ctx.processes)

    def check_config(self, config: RunConfig) -> None:
        """A run folder resumes only under the configuration it was started with. Methods may be added, and
        the settings of methods that have not started yet may differ (they are new)."""
        saved_file = self.path / "config.yaml"
        owned = self.finished_steps()
        if not is_file(saved_file) or owned is None:
            return
        started = {block for label in owned.methods for block in _blocks_of(label)}
        unstarted = set(METHODS.settings()) - started
        values = read_yaml(saved_file)
        if isinstance(values, dict):  # the blocks of methods that never ran hold nothing to resume, old keys or not
            values = {k: v for k, v in values.items() if k not in unstarted}
        try:
            saved = to_dict(build_config(values))
        except UserError as err:
            raise UserError(f"{saved_file}: this run's configuration no longer loads ({err}); resume it with the "
                            "mllmcl version that started it, or use another --out") from None
        new = to_dict(config)
        ignored = {"methods", "jobs"} | unstarted  # jobs: how, not what, is computed
        changed = sorted(k for k in set(saved) | set(new) if k not in ignored and saved.get(k) != new.get(k))
        if changed:
            raise UserError(f"{self.path} holds a run with another configuration (differs in: {', '.join(changed)}); "
                            "use another --out, or the same settings to resume it")


def _blocks_of(label: str) -> set[str]:
    """The settings blocks a method entry reads (none for an entry this version does not know)."""
    try:
        return parse_method_spec(label).blocks
    except UserError:
        return set()
