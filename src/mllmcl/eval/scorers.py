"""The official MLLM-CL scoring rules, one pure function per task, registered by task name.

Each rule reproduces what the released MLLM-CL evaluation scripts (github bjzhb666/MLLM-CL,
`ETrain/Eval/LLaVA/CoIN/eval_*.py`) do, quirks included, so that numbers computed here can be put next to
the paper's. What every aggregate shares (it is how those scripts count):

- the denominator is the number of prediction lines, not the number of questions (a question without a
  prediction is simply not counted);
- accuracy is `100 * sum(credit) / n`, printed with two decimals (`{:.2f}`), summed in prediction order;
- for the five domain tasks (rs, med, ad, sci, fin) a prediction that contains `Unanswerable`
  (case-sensitive) gets credit 0 and stays in the denominator; the ability tasks (ocr, vp, app, math)
  have no such check.

    >>> from mllmcl.eval import SCORERS
    >>> scorer = SCORERS.build("rs")
    >>> scorer.judge({"question_id": 1, "answer": "yes"}, "Yes, it is.")
    1.0
    >>> scorer.score({1: {"question_id": 1, "answer": "yes"}}, [{"question_id": 1, "text": "no"}])["accuracy"]
    0.0

A scorer is any object with the `Scorer` protocol below; `RuleScorer` is the one for rules that judge an
item from its row and prediction alone. The MathVista scorer (task `math`) lives in `mathvista.py`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Protocol, Sequence

from mllmcl.core.errors import UserError
from mllmcl.core.registry import Registry

Row = Mapping[str, Any]
Predictions = Sequence[Mapping[str, Any]] | Mapping[Any, str]


class Scorer(Protocol):
    """What the runner and the CLI need from a scorer (metadata in the spirit of lm-evaluation-harness)."""

    name: str
    description: str
    higher_is_better: bool

    def judge(self, row: Row, prediction: str) -> float:
        """Credit in [0, 1] for one prediction of the question `row`."""

    def score(self, rows_by_id: Mapping[Any, Row], predictions: Predictions) -> dict:
        """Aggregate: `accuracy`, `n`, per-item `credits` by question_id, and the task's extras."""


SCORERS: Registry[Scorer] = Registry("scorer")


# ---------------------------------------------------------------------------------------------- helpers

def field(row: Row, key: str) -> Any:
    """`row[key]`, or a UserError naming the question and the missing key."""
    try:
        return row[key]
    except KeyError:
        raise UserError(f"question {row.get('question_id')!r} has no {key!r} field") from None


def text_answer(row: Row) -> str:
    """The ground truth as a string (the official scripts call `.lower()` on it; numbers are allowed here)."""
    answer = field(row, "answer")
    return answer if isinstance(answer, str) else str(answer)


def percent(total: float, n: int) -> float:
    """`100 * total / n` as the official scripts print it: `{:.2f}`."""
    return float(f"{100.0 * total / n:.2f}")


def pair_predictions(rows_by_id: Mapping[Any, Row], predictions: Predictions) -> list[tuple[Any, Row, str]]:
    """Match prediction lines to questions, in prediction order.

    `predictions` is a list of `{"question_id", "text"}` objects (the official merge.jsonl lines) or a
    mapping question_id -> text. An unknown question_id, a duplicate, or a non-string text is a UserError:
    the official scripts crash on the first and silently double-count the second.
    """
    if isinstance(predictions, Mapping):
        lines: Iterable[tuple[Any, Any]] = predictions.items()
    else:
        lines = ((field(p, "question_id"), field(p, "text")) for p in predictions)
    pairs, seen = [], set()
    for qid, text in lines:
        if qid not in rows_by_id:
            raise UserError(f"prediction for question_id {qid!r}, which is not among the questions")
        if qid in seen:
            raise UserError(f"question_id {qid!r} has more than one prediction")
        if not isinstance(text, str):
            raise UserError(f"prediction for question_id {qid!r}: 'text' must be a string, got {text!r}")
        seen.add(qid)
        pairs.append((qid, rows_by_id[qid], text))
    if not pairs:
        raise UserError("no predictions to score")
    return pairs


# ------------------------------------------------------------------------------------------ the scorer

@dataclass(frozen=True)
class RuleScorer:
    """A scorer whose per-item credit depends only on the question row and the prediction text.

    `rule(row, prediction) -> credit`; `extras(rows, predictions, credits) -> dict` adds task-specific
    aggregates (OCR final score, VP count accuracy); `accuracy_of(credits, rows) -> float` replaces the
    default `100 * mean` (OCR reports hits / 10). `unanswerable_is_wrong` switches on the domain tasks'
    `Unanswerable` check. With `answer_optional`, rows without an `answer` are left unscored (APP, whose
    ground truth is held by the MMT-Bench server).
    """

    name: str
    description: str
    rule: Callable[[Row, str], float]
    unanswerable_is_wrong: bool = False
    extras: Callable[[list[Row], list[str], list[float]], dict] | None = None
    accuracy_of: Callable[[list[float], list[Row]], float] | None = None
    answer_optional: bool = False
    higher_is_better: bool = True
    aggregation: str = "mean"

    def judge(self, row: Row, prediction: str) -> float:
        if self.unanswerable_is_wrong and "Unanswerable" in prediction:
            return 0.0
        return float(self.rule(row, prediction))

    def score(self, rows_by_id: Mapping[Any, Row], predictions: Predictions) -> dict:
        lines = pair_predictions(rows_by_id, predictions)
        pairs = [p for p in lines if not self.answer_optional or p[1].get("answer") is not None]
        result: dict[str, Any] = {"task": self.name, "metric": "accuracy", "higher_is_better": self.higher_is_better,
                                  "n": len(lines), "n_questions": len(rows_by_id)}
        if self.answer_optional:
            result["n_scored"] = len(pairs)
        if not pairs:  # only possible with answer_optional: nothing can be scored locally
            return {**result, "accuracy": None, "credits": {}}
        rows = [row for _, row, _ in pairs]
        texts = [text for _, _, text in pairs]
        credits = [self.judge(row, text) for row, text in zip(rows, texts)]
        total = 0.0
        for credit in credits:  # plain left-to-right sum, as the official scripts accumulate it
            total += credit
        accuracy = self.accuracy_of(credits, rows) if self.accuracy_of else percent(total, len(credits))
        result.update(accuracy=accuracy, credits={qid: c for (qid, _, _), c in zip(pairs, credits)})
        if self.extras:
            result.update(self.extras(rows, texts, credits))
        return result


def register(scorer: RuleScorer) -> RuleScorer:
    """Put a scorer in SCORERS under its task name; `SCORERS.build(name)` returns it."""
    SCORERS.register(scorer.name, scorer.description)(lambda: scorer)
    return scorer


# ---------------------------------------------------------------------------------------- domain rules

def ai2d_rule(row: Row, prediction: str) -> float:
    """The "ai2d rule" (official eval_ai2d.py, used for RS and AD).

    Both sides lower-cased. A GT with a space must occur in the prediction. Otherwise the periods are
    removed from the GT (the prediction keeps its own); a prediction with a space must contain the GT
    preceded by a space or followed by a space, a period or a comma; a one-word prediction must merely
    contain it (so "no" is found in "none" and "2" in "12").
    """
    pred, gt = prediction.lower(), text_answer(row).lower()
    if " " in gt:
        return float(gt in pred)
    gt = gt.replace(".", "")
    if " " in pred:
        return float(any(form in pred for form in (" " + gt, gt + " ", gt + ".", gt + ",")))
    return float(gt in pred)


def substring_rule(row: Row, prediction: str) -> float:
    """Med (official eval_pvqa.py): the lower-cased GT occurs anywhere in the lower-cased prediction."""
    return float(text_answer(row).lower() in prediction.lower())


SCI_EXACT_SOURCES = ("AI2D", "TQA", "VQA", "SciVerse")


def sci_source(row: Row) -> str:
    """The source prefix of a Sci item: the image file name up to its first `_` (case kept)."""
    image = field(row, "image")
    if isinstance(image, (list, tuple)):  # the official script assumes one path; take the first
        image = image[0] if image else ""
    return str(image).split("/")[-1].split("_")[0]


def sci_rule(row: Row, prediction: str) -> float:
    """Sci (official eval_sci.py): the rule depends on the image file-name prefix before the first `_`.

    - prefix exactly `AI2D`, `TQA`, `VQA` or `SciVerse` (case-sensitive, as the official comparison is):
      lower-cased prediction equals the lower-cased GT;
    - anything else is treated as MapQA: if the prompt contains `Which states` (case-sensitive) the credit
      is the fraction of the comma-split GT items found among the comma-split prediction items, with no
      whitespace stripping (so "a, b" vs "a,b" matches only "a"); otherwise the GT must be a substring.
    The official script reads the prompt from the prediction line; it is the row's `text` (the prompt fed
    as is), with `question` as a fallback.
    """
    pred, gt = prediction.lower(), text_answer(row).lower()
    if sci_source(row) in SCI_EXACT_SOURCES:
        return float(pred == gt)
    prompt = row.get("text") or row.get("question") or ""
    if "Which states" in str(prompt):
        gt_items, pred_items = gt.split(","), pred.split(",")
        return sum(item in pred_items for item in gt_items) / len(gt_items)
    return float(gt in pred)


def fin_rule(row: Row, prediction: str) -> float:
    """Fin (official eval_finvis.py): prediction lower-cased with every space and period removed must equal
    the lower-cased GT (the GT itself is not stripped)."""
    return float(prediction.lower().replace(" ", "").replace(".", "") == text_answer(row).lower())


# --------------------------------------------------------------------------------------- ability rules

OCR_CATEGORIES = ("Regular Text Recognition", "Irregular Text Recognition", "Artistic Text Recognition",
                  "Handwriting Recognition", "Digit String Recognition", "Non-Semantic Text Recognition",
                  "Scene Text-centric VQA", "Doc-oriented VQA", "Key Information Extraction",
                  "Handwritten Mathematical Expression Recognition")
OCR_HME = "Handwritten Mathematical Expression Recognition"
# the official report folds the six recognition categories into one "Text Recognition" line
OCR_GROUPS = {"Text Recognition": OCR_CATEGORIES[:6], **{c: (c,) for c in OCR_CATEGORIES[6:]}}


def ocr_rule(row: Row, prediction: str) -> float:
    """OCRBench (official eval_ocr.py): a hit iff any GT (`answer` is a string or a list) occurs in the
    prediction after both are lower-cased, stripped and cleared of newlines. For "Handwritten Mathematical
    Expression Recognition" both are stripped and cleared of spaces and newlines instead, case kept.
    An `answer_type` outside the ten OCRBench categories is an error (the official script crashes)."""
    category = field(row, "answer_type")
    if category not in OCR_CATEGORIES:
        raise UserError(f"question {row.get('question_id')!r}: answer_type {category!r} is not an OCRBench "
                        f"category ({', '.join(OCR_CATEGORIES)})")
    answers = field(row, "answer")
    answers = [str(a) for a in answers] if isinstance(answers, (list, tuple)) else [str(answers)]
    if category == OCR_HME:
        def norm(s: str) -> str:
            return s.strip().replace(" ", "").replace("\n", "")
    else:
        def norm(s: str) -> str:
            return s.lower().strip().replace("\n", "")
    pred = norm(prediction)
    return float(any(norm(gt) in pred for gt in answers))


def _ocr_accuracy(credits: list[float], rows: list[Row]) -> float:
    """OCRBench's headline number: hits / 10 (a percentage only when there are the full 1000 items)."""
    return float(f"{sum(credits) / 10:.2f}")


def _ocr_extras(rows: list[Row], texts: list[str], credits: list[float]) -> dict:
    hits = {c: 0 for c in OCR_CATEGORIES}
    for row, credit in zip(rows, credits):
        hits[row["answer_type"]] += int(credit)
    final_score = sum(hits.values())
    return {"final_score": final_score, "final_score_norm": float(final_score) / 10,
            "hit_rate": percent(final_score, len(credits)),
            "groups": {group: sum(hits[c] for c in members) for group, members in OCR_GROUPS.items()}}


def vp_rule(row: Row, prediction: str) -> float:
    """CV-Bench (official eval_sat.py): both sides lower-cased, stripped, cleared of spaces, newlines and
    periods; the GT must be a substring of the prediction."""
    def norm(s: str) -> str:
        return s.lower().strip().replace(" ", "").replace("\n", "").replace(".", "")
    return float(norm(text_answer(row)) in norm(prediction))


def _vp_extras(rows: list[Row], texts: list[str], credits: list[float]) -> dict:
    """`count_accuracy` over the items whose `task` is `Count` (None when there are none: the official
    script divides by zero there)."""
    counted = [c for row, c in zip(rows, credits) if field(row, "task") == "Count"]
    return {"count_accuracy": percent(sum(counted), len(counted)) if counted else None, "n_count": len(counted)}


def app_rule(row: Row, prediction: str) -> float:
    """GUI agent (MMT-Bench GUI subset). The official pipeline sends `prediction.strip().upper()` as the
    chosen option to the MMT-Bench server; locally, when the row has an `answer`, the same string is
    compared with the upper-cased answer letter."""
    return float(prediction.strip().upper() == text_answer(row).strip().upper())


register(RuleScorer("rs", "RS (RSVQA): the ai2d rule, Unanswerable = 0", ai2d_rule, unanswerable_is_wrong=True))
register(RuleScorer("med", "Med (PathVQA): GT substring of prediction, lower-cased, Unanswerable = 0",
                    substring_rule, unanswerable_is_wrong=True))
register(RuleScorer("ad", "AD (DriveLM): the ai2d rule, Unanswerable = 0", ai2d_rule, unanswerable_is_wrong=True))
register(RuleScorer("sci", "Sci: exact match for AI2D/TQA/VQA/SciVerse, MapQA partial credit, Unanswerable = 0",
                    sci_rule, unanswerable_is_wrong=True))
register(RuleScorer("fin", "Fin (StockQA): prediction without spaces/periods equals GT, Unanswerable = 0",
                    fin_rule, unanswerable_is_wrong=True))
register(RuleScorer("ocr", "OCR (OCRBench): GT substring per answer_type; accuracy = hits / 10",
                    ocr_rule, extras=_ocr_extras, accuracy_of=_ocr_accuracy))
register(RuleScorer("vp", "VP (CV-Bench): normalised GT substring; also count_accuracy", vp_rule, extras=_vp_extras))
register(RuleScorer("app", "GUI agent (MMT-Bench): option letter; local only where answers are present",
                    app_rule, answer_optional=True))
