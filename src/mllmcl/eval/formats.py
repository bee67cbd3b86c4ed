"""Format validity: is an answer in the form its question asks for, right or wrong?

Accuracy alone cannot tell forgetting of knowledge (a well-formed wrong answer) from forgetting of format (an
answer in another task's form, e.g. "B" to a yes/no question after training on a multiple-choice task).
An answer is format-valid when it contains, as a whole word or phrase, one of the ground-truth answers of
its question family (the row's `question_type`, or the ground truth's kind: yes/no, letter, number, text)
— the family's answer vocabulary, taken from the rows being evaluated. A family with more than
`OPEN_VOCABULARY` distinct answers is open-ended (free text, real data): there an answer is valid when it
is of the ground truth's kind."""
from __future__ import annotations

import re
from collections import defaultdict
from typing import Mapping, Sequence

OPEN_VOCABULARY = 20
_YES_NO = {"yes", "no"}


def answer_kind(text: str) -> str:
    """yesno, letter ("B", "(B)", "B."), number, empty or text."""
    t = text.strip().lower().rstrip(".")
    if not t:
        return "empty"
    if t in _YES_NO:
        return "yesno"
    if re.fullmatch(r"\(?[a-z]\)?", t):
        return "letter"
    if re.fullmatch(r"[-+]?\d[\d,]*(\.\d+)?", t):
        return "number"
    return "text"


def family(row: Mapping, answer: str) -> str:
    return str(row.get("question_type") or row.get("family") or answer_kind(answer))


def _contains(text: str, phrase: str) -> bool:
    return re.search(r"(?<!\w)" + re.escape(phrase) + r"(?!\w)", text) is not None


def format_valid(rows: Sequence[Mapping], answers: Sequence[str], predictions: Sequence[str]) -> list[bool]:
    """Per prediction: is it in its question family's answer format? `rows` (test rows, for the family),
    `answers` (ground truths) and `predictions` are parallel."""
    vocabulary: dict[str, set[str]] = defaultdict(set)
    for row, answer in zip(rows, answers):
        vocabulary[family(row, answer)].add(answer.strip().lower().rstrip("."))
    valid = []
    for row, answer, prediction in zip(rows, answers, predictions):
        words = vocabulary[family(row, answer)]
        text = prediction.strip().lower()
        if len(words) > OPEN_VOCABULARY:
            valid.append(answer_kind(prediction) == answer_kind(answer) or
                         (answer_kind(answer) == "text" and answer_kind(prediction) not in ("empty", "yesno", "letter")))
        else:
            valid.append(any(_contains(text, w) for w in words if w))
    return valid
