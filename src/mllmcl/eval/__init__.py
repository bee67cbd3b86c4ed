"""Scoring: the official MLLM-CL per-task rules (`scorers.py`), MathVista offline (`mathvista.py`), and
file loading for `mllmcl score` (`files.py`).

    >>> from mllmcl.eval import SCORERS
    >>> result = SCORERS.build("med").score(rows_by_id, [{"question_id": 1, "text": "yes"}])
    >>> result["accuracy"], result["credits"]
"""
from mllmcl.eval import mathvista  # noqa: F401  (registers the `math` scorer)
from mllmcl.eval.scorers import SCORERS, RuleScorer, Scorer

__all__ = ["SCORERS", "RuleScorer", "Scorer", "get_scorer"]


def get_scorer(task: str, **options) -> Scorer:
    """The scorer of a task name (`rs`, `med`, `ad`, `sci`, `fin`, `ocr`, `math`, `vp`, `app`); options go to
    its factory (only `math` takes one: `extractor`, an LLM answer extractor)."""
    return SCORERS.build(task, **options)
