"""MathVista (the Math & Logic test of ability continual learning), scored offline.

The official MLLM-CL number uses VLMEvalKit's MathVista protocol (a copy of it is MLLM-CL's
`eval_math.py`). Per item:

1. **Prefetch** (rules). Multiple choice: replace each of `.()[],:;!*#{}` by a space and split on
   whitespace; if exactly one option letter (A, B, ... for the item's choices) is among the tokens, that
   letter is the answer; else if exactly one option's text (lower-cased) occurs in the lower-cased
   prediction, that option. Free form: the raw prediction parsed as `int` (integer answers) or `float`
   (float answers) must equal the answer; a prefetch never decides a wrong free-form item.
2. Items the prefetch leaves open go to an LLM that extracts the answer. Here a rule-based extractor takes
   its place (`extract`), and an LLM can be plugged in (`judge.OpenAIExtractor`), never required.
3. **Check** of the extracted answer, with no tolerance: multiple choice, the option inferred from it as
   in step 1 equals `answer_option`; integer, `int(x) == int(answer)`; float, `float(x) == float(answer)`
   (no rounding to `precision`). Quirks of VLMEvalKit reproduced: any other answer type (the two `list`
   items of testmini) is never correct, because its check compares `str(None)` with the answer; a correct
   free-form answer equal to 0 is not counted as prefetched (the prefetch result is tested for truth),
   it is decided by the extractor instead (and still scores); a refusal phrase or a lone `Z` token is
   prefetched as the non-option `Z`, which scores 0.

Rows follow the MathVista item format: `question_id`, `question`, `answer`, `question_type`
(multi_choice / free_form), `answer_type` (text / integer / float / list), `choices`, `answer_option`.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from mllmcl.core.errors import UserError
from mllmcl.eval.scorers import SCORERS, Predictions, Row, field, pair_predictions, percent

# VLMEvalKit treats these replies as a refusal and maps them to the non-option "Z"
REFUSALS = ("Sorry, I can't help with images of people yet.", "I can't process this file.",
            "I'm sorry, but without the image provided", "Cannot determine the answer")
API_FAILURE = "Failed to obtain answer via API"
_SEPARATORS = str.maketrans({c: " " for c in ".()[],:;!*#{}"})

Extractor = Callable[[Row, str], "str | None"]


# ------------------------------------------------------------------------------------ item fields

def options(row: Row) -> dict[str, str]:
    """The choices as {"A": text, "B": text, ...} (a list, or its Python repr as in VLMEvalKit's TSV)."""
    choices = field(row, "choices")
    if isinstance(choices, str):
        try:
            choices = ast.literal_eval(choices)
        except (ValueError, SyntaxError):
            raise UserError(f"question {row.get('question_id')!r}: choices {choices!r} is not a list") from None
    if not isinstance(choices, (list, tuple)) or not choices:
        raise UserError(f"question {row.get('question_id')!r}: a multi_choice item needs a non-empty 'choices' list")
    return {chr(65 + i): str(choice) for i, choice in enumerate(choices)}


def answer_option(row: Row) -> str:
    """The correct letter: `answer_option`, or the position of `answer` among the choices if that is absent."""
    if row.get("answer_option"):
        return str(row["answer_option"])
    for letter, text in options(row).items():
        if text == str(field(row, "answer")):
            return letter
    raise UserError(f"question {row.get('question_id')!r}: no 'answer_option' and the answer is not a choice")


def is_multi_choice(row: Row) -> bool:
    return field(row, "question_type") == "multi_choice"


# --------------------------------------------------------------------------- VLMEvalKit's rules

def infer_option(text: str, opts: Mapping[str, str]) -> str | None:
    """VLMEvalKit's `can_infer`: a letter among the separator-split tokens if exactly one option letter
    is there (`Z` for a refusal, or for a lone `Z` token when no letter is), else the one option whose
    lower-cased text occurs in the lower-cased text, else None."""
    if API_FAILURE not in text:
        if any(refusal in text for refusal in REFUSALS):
            return "Z"
        tokens = text.translate(_SEPARATORS).split()
        letters = [letter for letter in opts if letter in tokens]
        if len(letters) == 1:
            return letters[0]
        if not letters and "Z" in tokens:
            return "Z"
    lowered = text.lower()
    found = [letter for letter, option in opts.items() if option.lower() in lowered]
    return found[0] if len(found) == 1 else None


def _parse(kind: str, text: Any) -> int | float | None:
    try:
        return int(text) if kind == "integer" else float(text)
    except (ValueError, TypeError, OverflowError):  # OverflowError: int(inf), float(10**400)
        return None


def prefetch(row: Row, prediction: str) -> str | None:
    """The answer VLMEvalKit's prefetch settles on (a letter, or the raw prediction), or None."""
    if is_multi_choice(row):
        return infer_option(prediction, options(row))
    kind = field(row, "answer_type")
    if kind not in ("integer", "float"):
        return None
    value, answer = _parse(kind, prediction), _parse(kind, field(row, "answer"))
    # `if post_check(...)` in VLMEvalKit: a correct answer of 0 is falsy, so it is not prefetched
    return prediction if value is not None and value == answer and value else None


def check(row: Row, extracted: str) -> bool:
    """VLMEvalKit's final check of an extracted answer: option, int or float equality, nothing else."""
    if is_multi_choice(row):
        return infer_option(str(extracted), options(row)) == answer_option(row)
    kind = field(row, "answer_type")
    if kind not in ("integer", "float"):
        return False  # VLMEvalKit compares str(None) with the answer here
    value = _parse(kind, extracted)
    return value is not None and value == _parse(kind, field(row, "answer"))


# ---------------------------------------------------------------------------------- rule extractor

_CUE = re.compile(r"\banswer\s*(?:is\b|would be\b|should be\b|:|=)\s*:?", re.IGNORECASE)
# a number not glued on its left to a word, a decimal point, a caret or a hyphen; 1,234 thousands allowed
_NUMBER = re.compile(r"(?<![\w.^\-−])[-−]?(?:\d{1,3}(?:,\d{3})+(?![\d])|\d+)(?:\.\d+)?"
                     r"|(?<![\w.^\-−])[-−]?\.\d+")
_FRACTION = re.compile(r"\s*/\s*(\d+(?:\.\d+)?)(?![\d/])")
_TIMES_TEN = re.compile(r"\s*(?:×|x|\*|·)\s*10\s*\^\s*\{?\s*([-−]?\d+)\s*\}?")
_E_NOTATION = re.compile(r"[eE]([-+]?\d+)\b")
_POWER = re.compile(r"\s*\^\s*\{?\s*([-−]?\d+)\s*\}?")
_WORDS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty".split())}
_WORDS.update({"thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90})
_WORD = re.compile(r"\b(" + "|".join(_WORDS) + r")\b", re.IGNORECASE)
_LIST = re.compile(r"\[[^\[\]]*\]")


def answer_span(text: str) -> tuple[str, bool]:
    """The text after the last "answer is" / "answer:" cue, and whether there was one."""
    cues = list(_CUE.finditer(text))
    return (text[cues[-1].end():], True) if cues else (text, False)


def _expression(text: str, match: re.Match) -> tuple[str, int]:
    """The number a match starts, as a plain literal (commas dropped), with a fraction, `a × 10^b`, `aeb`
    or `a^b` right after it evaluated (the value then written without a trailing `.0`); and where it ends."""
    literal = match.group().replace(",", "").replace("−", "-")
    rest, value = text[match.end():], float(literal)
    for pattern, combine in ((_TIMES_TEN, lambda v, e: v * 10.0 ** e), (_E_NOTATION, lambda v, e: v * 10.0 ** e),
                             (_POWER, lambda v, e: v ** e), (_FRACTION, lambda v, d: v / d if d else None)):
        suffix = pattern.match(rest)
        if suffix:
            operand = float(suffix.group(1).replace("−", "-"))
            if pattern is not _FRACTION and abs(operand) > 30:
                break
            try:
                combined = combine(value, operand)
            except (ZeroDivisionError, OverflowError):  # 0^-1, 10^30^…: keep the plain number
                combined = None
            if combined is None:
                break
            return _plain(combined), match.end() + suffix.end()
    return literal, match.end()


def _plain(value: float) -> str:
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)


def numbers(text: str) -> list[str]:
    """Every number in the text, in order; the parts of `8/11` or `3 × 10^5` make one number."""
    found, end = [], 0
    for match in _NUMBER.finditer(text):
        if match.start() >= end:
            literal, end = _expression(text, match)
            found.append(literal)
    return found


def extract_number(text: str) -> str | None:
    """The answer number: the first one after an answer cue, else the last one in the text; a number word
    (zero … ninety) where no digits are written."""
    span, cued = answer_span(text)
    found = numbers(span)
    if found:
        return found[0] if cued else found[-1]
    words = _WORD.findall(span)
    if words:
        return str(_WORDS[(words[0] if cued else words[-1]).lower()])
    return None


def _option_value(option: str) -> float | None:
    """The numeric value of an option that is one number with at most a unit (`145°`, `3/11`, `2.5 cm`)."""
    found = numbers(option)
    first = _NUMBER.search(option)
    if len(found) != 1 or re.search(r"[A-Za-z]", option[:first.start()]):
        return None
    return _parse("float", found[0])


def extract_option(text: str, opts: Mapping[str, str]) -> str | None:
    """A letter for a multiple-choice reply the prefetch could not settle, by decreasing confidence:
    the letter right after an answer cue; a letter written as a label (`(B)`, `option B`, `choice B`);
    the one option whose text occurs as a whole word (ignoring options contained in a longer one found);
    the one option whose numeric value equals the number of the reply."""
    span, cued = answer_span(text)
    if cued:
        # the letter must end there: "(B)", "B.", "B", "B 8/11", but not the article in "A triangle"
        first = re.match(r"\s*[(\[]?\s*([A-Z])(?:\s*[)\]]|[.,:;!]|\s*$|\s+(?=[^A-Za-z]))", span)
        if first and first.group(1) in opts:
            return first.group(1)
    labels = set(re.findall(r"\(([A-Z])\)", text)) | set(re.findall(r"\b(?i:option|choice)\s*\(?([A-Z])\b", text))
    labels &= set(opts)
    if len(labels) == 1:
        return labels.pop()
    lowered = (span if cued else text).lower()
    found = {letter: option.lower() for letter, option in opts.items() if option.strip() and re.search(
        r"(?<![\w.])" + re.escape(option.lower()) + r"(?!\w)", lowered)}
    found = {k: v for k, v in found.items() if not any(v != w and v in w for w in found.values())}
    if len(found) == 1:
        return next(iter(found))
    number = extract_number(text)
    if number is not None:
        matches = [letter for letter, option in opts.items() if _option_value(option) == float(number)]
        if len(matches) == 1:
            return matches[0]
    return None


def extract(row: Row, prediction: str) -> str | None:
    """Rule-based stand-in for the LLM extractor: an option letter, a number, or a `[...]` list."""
    if is_multi_choice(row):
        return extract_option(prediction, options(row))
    kind = field(row, "answer_type")
    if kind == "list":
        lists = _LIST.findall(answer_span(prediction)[0])
        return lists[0] if lists else None
    number = extract_number(prediction)
    if number is not None and kind == "integer" and re.fullmatch(r"-?\d+\.0+", number):
        number = number.split(".")[0]  # "4.0" asked as an integer is the integer 4
    return number


# ------------------------------------------------------------------------------------------ scoring

@dataclass(frozen=True)
class Decision:
    """How one item was settled: the answer taken, its credit, and by what (prefetch/llm/rules/none)."""

    answer: str | None
    credit: float
    by: str


def decide(row: Row, prediction: str, extractor: Extractor | None = None) -> Decision:
    """Prefetch, then the LLM extractor if one is given (falling back to rules when it fails), then rules."""
    found = prefetch(row, prediction)
    if found is not None:
        return Decision(found, float(check(row, found)), "prefetch")
    if extractor is not None:
        found = extractor(row, prediction)
        if found is not None:
            return Decision(found, float(check(row, found)), "llm")
    found = extract(row, prediction)
    if found is None:
        return Decision(None, 0.0, "none")
    return Decision(found, float(check(row, found)), "rules")


@dataclass(frozen=True)
class MathVistaScorer:
    """MathVista accuracy (VLMEvalKit protocol), offline unless an LLM `extractor` is given."""

    extractor: Extractor | None = None
    name: str = "math"
    description: str = "Math & Logic (MathVista): VLMEvalKit prefetch, then rule (or LLM) extraction"
    higher_is_better: bool = True
    aggregation: str = "mean"

    def judge(self, row: Row, prediction: str) -> float:
        return decide(row, prediction, self.extractor).credit

    def score(self, rows_by_id: Mapping[Any, Row], predictions: Predictions) -> dict:
        pairs = pair_predictions(rows_by_id, predictions)
        decisions = [decide(row, text, self.extractor) for _, row, text in pairs]
        total = 0.0
        for decision in decisions:
            total += decision.credit
        by = {kind: sum(d.by == kind for d in decisions) for kind in ("prefetch", "llm", "rules", "none")}
        return {"task": self.name, "metric": "accuracy", "higher_is_better": self.higher_is_better,
                "accuracy": percent(total, len(pairs)), "n": len(pairs), "n_questions": len(rows_by_id),
                "hits": int(total), "prefetched": by["prefetch"], "prefetch_rate": percent(by["prefetch"], len(pairs)),
                "extracted_by_llm": by["llm"], "extracted_by_rules": by["rules"], "undecided": by["none"],
                "credits": {qid: d.credit for (qid, _, _), d in zip(pairs, decisions)},
                "extracted": {qid: d.answer for (qid, _, _), d in zip(pairs, decisions)}}


@SCORERS.register("math", MathVistaScorer.description)
def _math(extractor: Extractor | None = None) -> MathVistaScorer:
    return MathVistaScorer(extractor)
