"""Scoring: the official MLLM-CL per-task rules (`scorers.py`), MathVista offline (`mathvista.py`), and
file loading for `mllmcl score` (`files.py`).

    >>> from mllmcl.eval import SCORERS
    >>> result = SCORERS.build("med").score(rows_by_id, [{"question_id": 1, "text": "yes"}])
    >>> result["accuracy"], result["credits"]
"""
from mllmcl.core.errors import UserError
from mllmcl.data.tasks import BUILTIN, find_name
from mllmcl.eval import mathvista  # noqa: F401  (registers the `math` scorer)
from mllmcl.eval.scorers import SCORERS, RuleScorer, Scorer

__all__ = ["SCORERS", "RuleScorer", "Scorer", "get_scorer", "scorer_name"]


def _task_scorers() -> dict[str, str]:
    """Official task name (as written in configs, folders and results: RS, Med, …) -> its scorer."""
    return {spec.name: spec.scorer for group in BUILTIN.values() for spec in group}


def scorer_name(typed: str) -> str:
    """The registered scorer a user means by a task or scorer name, in any case: `RS`, `rs`, `Rs` -> `rs`.
    Anything else is a UserError listing the task names as the user sees them elsewhere (RS, Med, …)."""
    names, tasks = SCORERS.names(), _task_scorers()
    if isinstance(typed, str):
        for candidate in (typed, typed.strip().casefold()):
            if candidate in names:
                return candidate
        task = find_name(typed, list(tasks))
        if task is not None:
            return tasks[task]
    shown = list(tasks) + [n for n in names if n not in tasks.values()]
    raise UserError(f"unknown task {typed!r}; tasks: {', '.join(shown)} (any case)")


def get_scorer(task: str, **options) -> Scorer:
    """The scorer of a task name (`RS`, `Med`, `AD`, `Sci`, `Fin`, `OCR`, `Math`, `VP`, `APP`, in any case, or
    the scorer's own name); options go to its factory (only `math` takes one: `extractor`, an LLM answer
    extractor)."""
    return SCORERS.build(scorer_name(task), **options)
