"""Answer Style Diversification (SEFE's ASD) by rules: a share of a task's training rows rewritten into
another answer style, so one task does not teach a single style for every question.

SEFE rewrites with an LLM into yes/no, multiple choice, brief and detailed answers. Rules can make three of
them from a row's own question and answer, with distractors drawn from the task's other answers:
- brief → multiple choice: the answer among up to three other answers of the task, "A. …" lines and
  LLaVA's letter instruction; the answer becomes the letter;
- brief → yes/no: "Is the answer "X"?" with the right answer or a distractor, half and half, and the yes/no
  instruction;
- multiple choice → brief: the options dropped, the chosen option's text as the answer, LLaVA's short-answer
  instruction.
A yes/no row becomes multiple choice between Yes and No. "Detailed" needs an LLM and is left out."""
from __future__ import annotations

import random
import re
from dataclasses import replace
from typing import Sequence

from mllmcl.data.answer_formats import answer_kind
from mllmcl.data.mllm_cl import Sample
from mllmcl.data.records import split_instruction
from mllmcl.data.tasks import FIN_YES_NO, FORMAT_INSTRUCTIONS, LETTER_INSTRUCTION, SHORT_INSTRUCTION

_OPTION = re.compile(r"^\(?([A-Z])[.)]\s*(.+)$", flags=re.M)


def diversify(rows: Sequence[Sample], share: float, seed: int) -> list[Sample]:
    """`rows` with round(share · n) of them, drawn with `seed`, rewritten into another answer style (a row no
    rule applies to stays as it is). Order and every other row are unchanged."""
    rng = random.Random(seed)
    chosen = set(rng.sample(range(len(rows)), round(share * len(rows)))) if rows else set()
    pool = sorted({r.answer for r in rows if answer_kind(r.answer) in ("text", "number")})
    return [restyle(row, pool, rng) if i in chosen else row for i, row in enumerate(rows)]


def restyle(row: Sample, answers: Sequence[str], rng: random.Random) -> Sample:
    """`row` in another answer style (see the module's rules); `answers` are the task's brief answers."""
    question, _ = split_instruction(row.question, FORMAT_INSTRUCTIONS)
    kind = answer_kind(row.answer)
    if kind == "letter":
        options = dict(_OPTION.findall(question))
        text = options.get(row.answer.strip().strip("().").upper())
        if text is None:
            return row
        return _with(row, _OPTION.sub("", question).strip() + "\n" + SHORT_INSTRUCTION, text.strip())
    if kind == "yesno":
        return _choice(row, question, row.answer.strip().capitalize(), ["Yes", "No"], rng)
    others = [a for a in answers if a.lower() != row.answer.lower()]
    if not others:
        return row
    if rng.random() < 0.5:
        return _choice(row, question, row.answer, [row.answer, *rng.sample(others, min(3, len(others)))], rng)
    right = rng.random() < 0.5
    candidate = row.answer if right else rng.choice(others)
    return _with(row, f'{question}\nIs the answer "{candidate}"?{FIN_YES_NO}', "Yes" if right else "No")


def _choice(row: Sample, question: str, answer: str, options: list[str], rng: random.Random) -> Sample:
    rng.shuffle(options)
    lines = "\n".join(f"{chr(65 + i)}. {o}" for i, o in enumerate(options))
    return _with(row, f"{question}\n{lines}\n{LETTER_INSTRUCTION}", chr(65 + options.index(answer)))


def _with(row: Sample, question: str, answer: str) -> Sample:
    return replace(row, question=question, answer=answer, turns=((question, answer),))
