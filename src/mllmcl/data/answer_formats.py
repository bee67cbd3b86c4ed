"""Answer formats: what form a question asks its answer in, and what form an answer is in.

A prompt of the release ends with the instruction of its answer format (`tasks.FORMAT_INSTRUCTIONS`); a
synthetic row also names its format in `answer_format`. Both say which *kinds* of answer fit: a letter
instruction asks for an option letter, a yes/no instruction for yes or no, LLaVA's short-answer instruction
for a word, a phrase, a number or yes/no. `mllmcl data check` holds every item's answer against it, and the
evaluation's format-valid rate every prediction.
"""
from __future__ import annotations

import re
from typing import Mapping

from mllmcl.data.tasks import FIN_LETTER, FIN_YES_NO, LETTER_INSTRUCTION, SHORT_INSTRUCTION

INSTRUCTION_FORMATS: dict[str, str] = {
    LETTER_INSTRUCTION: "letter", FIN_LETTER.strip(): "letter", FIN_YES_NO.strip(): "yesno",
    SHORT_INSTRUCTION: "short",
}
"""Each known instruction → the answer format it asks for (`short`: a word, phrase, number or yes/no)."""

FITS: dict[str, frozenset[str]] = {
    "yesno": frozenset({"yesno"}),
    "letter": frozenset({"letter"}),
    "number": frozenset({"number"}),
    "text": frozenset({"text", "number"}),
    "short": frozenset({"text", "number", "yesno"}),
}
"""Answer format → the answer kinds (`answer_kind`) that are in it."""


def answer_kind(text: str) -> str:
    """yesno, letter ("B", "(B)", "B."), number, empty or text."""
    t = text.strip().lower().rstrip(".")
    if not t:
        return "empty"
    if t in ("yes", "no"):
        return "yesno"
    if re.fullmatch(r"\(?[a-z]\)?", t):
        return "letter"
    if re.fullmatch(r"[-+]?\d[\d,]*(\.\d+)?", t):
        return "number"
    return "text"


def instruction_of(prompt: str) -> str:
    """The known answer-format instruction `prompt` ends with, or "" when it ends with none."""
    tail = prompt.rstrip()
    return next((i for i in INSTRUCTION_FORMATS if tail.endswith(i)), "")


def expected_format(row: Mapping, prompt: str) -> str | None:
    """The answer format an item asks for: its row's `answer_format` where it names one, else its prompt's
    instruction; None when neither says (a release row without an instruction)."""
    named = row.get("answer_format")
    if isinstance(named, str) and named in FITS:
        return named
    return INSTRUCTION_FORMATS.get(instruction_of(prompt))


def fits(answer: str, fmt: str) -> bool:
    """Whether `answer` is in the answer format `fmt` (right or wrong)."""
    return answer_kind(answer) in FITS[fmt]


def option_letters(prompt: str) -> list[str]:
    """The letters of the options a prompt lists, one per line (`A. …`, `(B) …`)."""
    return re.findall(r"^\(?([A-Z])[.)]\s", prompt, flags=re.M)


def format_problem(row: Mapping, prompt: str, answer: str) -> str | None:
    """What is wrong with an item whose answer is not in the format its instruction asks for (None: nothing):
    an answer of another kind than the instruction's, a letter that is not among the listed options, or a row
    whose `answer_format` contradicts its instruction."""
    instruction = instruction_of(prompt)
    asked = INSTRUCTION_FORMATS.get(instruction)
    named = row.get("answer_format")
    if asked and isinstance(named, str) and named in FITS and not FITS[named] & FITS[asked]:
        return f"answer_format {named!r} contradicts the instruction {instruction!r}"
    fmt = expected_format(row, prompt)
    if fmt is None or not answer:
        return None
    if not fits(answer, fmt):
        return f"answer {answer!r} is not in the {fmt} format its question asks for"
    if fmt == "letter":
        listed = option_letters(prompt)
        letter = answer.strip().strip("().").upper()
        if listed and letter not in listed:
            return f"answer {answer!r} is not one of the listed options {', '.join(listed)}"
    return None
