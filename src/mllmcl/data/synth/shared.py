"""Shared question formats and the two overlap knobs of the synthetic domain (DCL) benchmark.

`overlap` ∈ [0, 1] is the share of items (train, val, test and unseen alike) asked in a *shared format*:
one of `FAMILIES`, generic question templates whose asked text is identical in every domain, drawn with
the same probabilities in every domain, so at overlap 1 the question says nothing about the task (a router
that reads only the question is at chance). Within a domain each template means one fixed rule, the task
module's `shared(rng, family, size, look)`, so the image alone determines the answer and an expert can
learn it. The rules are chosen so that the benchmark has

* a transfer pair, RS → Sci: both answer the letter question with the dominant land cover, A water /
  B built-up / C vegetation / D bare, in the same colours (RS on aerial tiles, Sci on flat maps), so an RS
  expert reads Sci's maps;
* a conflict pair, Sci → Fin: both answer the yes/no question about the same kind of colour-coded price
  chart with opposite rules (Sci: Yes when the plotted value fell; Fin: Yes when it rose), so a learner
  trained on Fin after Sci must overwrite Sci's rule.

Answers are Yes/No and letters A-D. There is no number template: Fin's official prompt rule appends the
letter instruction to every answer that is not Yes/No, so a number question could not be asked with the
same text in Fin as elsewhere. The templates end with Fin's suffixes, so after Fin's prompt rule (which the
writer applies to Fin's training rows and the loader to its test rows) all five domains ask the same text;
for Fin the stem is written and the rule adds the suffix (`written_question`).

`visual_overlap` ∈ [0, 1] is the share of items drawn with the shared look (`draw.SHARED_LOOK`): their
backdrop colours come from one pool of neutral tones shared by all domains instead of the task's palette.

Both decisions are made per item by a generator of its own, seeded like the item's (seed, task, split,
index) but apart from it: an item that is not shared at overlap p is exactly the item drawn at overlap 0
(so the defaults write the same bytes as before the knobs existed), and raising a knob only turns more items
shared (an item is shared when its fixed uniform draw is below p). Items that are asked in a shared format
carry `format: "shared"`, `family` and `answer_format` in their rows; when overlap > 0 the other items carry
`format: "own"` and their `answer_format` too (at overlap 0 the rows are as they always were).
"""
from __future__ import annotations

import random
import re
from dataclasses import replace
from typing import Callable

from mllmcl.data.synth.base import SeedSplit, SynthItem, SynthTask, item_rng, letters
from mllmcl.data.synth.draw import NO, OWN_LOOK, SHARED_LOOK, YES
from mllmcl.data.tasks import BUILTIN, FIN_LETTER, FIN_YES_NO

FAMILIES = ("yesno", "letter")
"""The shared templates, drawn uniformly in every domain."""
LETTER_OPTIONS = ("first class", "second class", "third class", "fourth class")
STEMS = {
    "yesno": "Is the key condition met in this image?",
    "letter": "Which class does this image belong to?\n"
              + "\n".join(f"{mark}. {option}" for mark, option in zip(letters(4), LETTER_OPTIONS)),
}
ASKED = {"yesno": STEMS["yesno"] + FIN_YES_NO, "letter": STEMS["letter"] + FIN_LETTER}
"""The question every domain asks for each template, after its prompt rule."""


def answer_format(answer: str) -> str:
    """The format class of a reference answer: yesno, letter (A-D), number or text."""
    if answer in (YES, NO):
        return "yesno"
    if re.fullmatch(r"[A-D]", answer):
        return "letter"
    if re.fullmatch(r"-?\d+(\.\d+)?", answer):
        return "number"
    return "text"


def _prompt_rule(task: str) -> Callable[[str, str], str]:
    for specs in BUILTIN.values():
        for spec in specs:
            if spec.name == task:
                return spec.prompt
    return lambda text, answer: text  # a task without a built-in spec (Unseen) is asked as written


def written_question(task: str, family: str, answer: str) -> str:
    """The text to write for `task` so that its prompt rule turns it into `ASKED[family]`: the stem where
    the rule adds the suffix (Fin), the whole question where the task has no rule."""
    prompt, asked = _prompt_rule(task), ASKED[family]
    for text in (STEMS[family], asked):
        if prompt(text, answer) == asked:
            return text
    raise ValueError(f"the prompt rule of {task} changes the shared {family} question; adapt the templates")


def shared_item(task: SynthTask, rng: random.Random, size: int, shared_look: bool = False) -> SynthItem:
    """One shared-format item of `task`: a template drawn uniformly, the task's rule for it, the asked text."""
    if task.shared is None:
        raise ValueError(f"synthetic task {task.name} has no shared-format rule")
    family = rng.choice(FAMILIES)
    item = task.shared(rng, family, size, SHARED_LOOK if shared_look else OWN_LOOK)
    extra = {"question_type": f"shared_{family}", **item.extra, "format": "shared", "family": family,
             "answer_format": answer_format(item.answer)}
    if family == "letter":
        extra["choices"] = list(LETTER_OPTIONS)
    return replace(item, question=written_question(task.name, family, item.answer), extra=extra)


def knob_rng(seed: int, task: str, split: SeedSplit, index: int) -> random.Random:
    """The generator of an item's two knob decisions, apart from the one that draws it."""
    return random.Random(f"mllmcl-synth/{seed}/{task}/{split}/{index}/knobs")


def draw_item(task: SynthTask, seed: int, split: SeedSplit, index: int, size: int, overlap: float = 0.0,
              visual_overlap: float = 0.0) -> SynthItem:
    """Item `index` of `split` of `task`: shared-format with probability `overlap`, in the shared look with
    probability `visual_overlap` (decided by `knob_rng`). Validation items are drawn like test items."""
    rng = item_rng(seed, task.name, split, index)
    drawn_as = "test" if split == "val" else split
    if not overlap and not visual_overlap:
        return task.draw(rng, drawn_as, size)
    knobs = knob_rng(seed, task.name, split, index)
    shared_format, shared_look = knobs.random() < overlap, knobs.random() < visual_overlap
    if shared_format:
        return shared_item(task, rng, size, shared_look)
    item = task.draw(rng, drawn_as, size, look=SHARED_LOOK if shared_look else OWN_LOOK)
    if overlap:
        item = replace(item, extra={**item.extra, "format": "own", "answer_format": answer_format(item.answer)})
    return item
