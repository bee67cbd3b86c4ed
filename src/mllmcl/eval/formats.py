"""Format validity: is an answer in the form its question asks for, right or wrong?

Accuracy alone cannot tell forgetting of knowledge (a well-formed wrong answer) from forgetting of format (an
answer in another task's form, e.g. "B" to a yes/no question after training on a multiple-choice task).

Where the question says what form it asks for (its row's `answer_format`, or the answer-format instruction its
prompt ends with: `mllmcl.data.answer_formats`), an answer is format-valid when it is of a kind that form
admits: an option letter for a letter question, yes or no for a yes/no question, a word, phrase or number for
a short answer. Elsewhere (release rows without an instruction) it is valid when it contains, as a whole word
or phrase, one of the ground-truth answers of its question family (the row's `question_type`, or the ground
truth's kind) — the family's answer vocabulary, taken from the rows being evaluated; a family with more than
`OPEN_VOCABULARY` distinct answers is open-ended, and there an answer is valid when it is of the ground
truth's kind."""
from __future__ import annotations

import re
from collections import defaultdict
from typing import Mapping, Sequence

from mllmcl.data.answer_formats import answer_kind, expected_format, fits

OPEN_VOCABULARY = 20


def family(row: Mapping, answer: str) -> str:
    return str(row.get("question_type") or row.get("family") or answer_kind(answer))


def _contains(text: str, phrase: str) -> bool:
    return re.search(r"(?<!\w)" + re.escape(phrase) + r"(?!\w)", text) is not None


def format_valid(rows: Sequence[Mapping], answers: Sequence[str], predictions: Sequence[str],
                 prompts: Sequence[str] | None = None) -> list[bool]:
    """Per prediction: is it in the answer format its question asks for? `rows` (test rows), `answers`
    (ground truths), `predictions` and `prompts` (the prompts as asked; default: none known) are parallel."""
    prompts = prompts if prompts is not None else [""] * len(rows)
    vocabulary: dict[str, set[str]] = defaultdict(set)
    for row, answer in zip(rows, answers):
        vocabulary[family(row, answer)].add(answer.strip().lower().rstrip("."))
    valid = []
    for row, answer, prediction, prompt in zip(rows, answers, predictions, prompts):
        fmt = expected_format(row, prompt)
        if fmt is not None:
            valid.append(fits(prediction, fmt))
            continue
        words = vocabulary[family(row, answer)]
        text = prediction.strip().lower()
        if len(words) > OPEN_VOCABULARY:
            valid.append(answer_kind(prediction) == answer_kind(answer) or
                         (answer_kind(answer) == "text" and answer_kind(prediction) not in ("empty", "yesno", "letter")))
        else:
            valid.append(any(_contains(text, w) for w in words if w))
    return valid
