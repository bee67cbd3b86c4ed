"""Shared question formats and the two overlap knobs of the synthetic domain (DCL) benchmark.

`overlap` ∈ [0, 1] is the share of items (train, val, test and unseen alike) asked in a *shared format*:
one of `FAMILIES`, generic question templates whose asked text, answer-format instruction included, is
identical in every domain. Within a domain each template means one fixed rule, the task module's
`shared(rng, family, size, look)`, so the image alone determines the answer and an expert can learn it, and
the question says nothing about the domain: a router has to read the image. Each domain asks the templates
in the mix of answer formats of its real task (`SynthTask.mix`: RS and Med mostly yes/no and short answers,
Sci and Fin letters and yes/no), so the format alone carries what it carries in the release, and the
wording nothing more. The default benchmark asks every item in a shared format (overlap 1).

The templates end with the instruction of their answer format, the same in every domain: Fin's two
suffixes for yes/no and letters (Fin's official prompt rule appends them; the writer applies it to Fin's
training rows and the loader to its test rows, so Fin's rows store the stem and the rule adds the suffix:
`written_question`) and LLaVA-1.5's short-answer instruction for a word or phrase. A later task therefore
never changes what an instruction asks for: a yes/no instruction is answered yes or no in every domain.

`visual_overlap` ∈ [0, 1] is the share of items drawn with the shared look (`draw.SHARED_LOOK`): their
backdrop colours come from one pool of neutral tones shared by all domains instead of the task's palette.

Both decisions are made per item by a generator of its own, seeded like the item's (seed, task, split,
index) but apart from it: an item that is not shared at overlap p is exactly the item drawn at overlap 0,
and raising a knob only turns more items shared (an item is shared when its fixed uniform draw is below p).
Every row carries `answer_format` (the format its question asks for); shared rows also `format: "shared"`
and `family`, own rows (overlap < 1) `format: "own"`.
"""
from __future__ import annotations

import random
from dataclasses import replace
from typing import Callable

from mllmcl.data.synth.base import SeedSplit, SynthItem, SynthTask, item_rng, letters
from mllmcl.data.synth.draw import OWN_LOOK, SHARED_LOOK
from mllmcl.data.tasks import BUILTIN, FIN_LETTER, FIN_YES_NO, LETTER_INSTRUCTION, SHORT_INSTRUCTION

FAMILIES = ("yesno", "letter", "text")
"""The shared templates, one per answer format."""
LETTER_OPTIONS = ("first class", "second class", "third class", "fourth class")
STEMS = {
    "yesno": "Is the key condition met in this image?",
    "letter": "Which class does this image belong to?\n"
              + "\n".join(f"{mark}. {option}" for mark, option in zip(letters(4), LETTER_OPTIONS)),
    "text": "What is the key finding in this image?",
}
ASKED = {"yesno": STEMS["yesno"] + FIN_YES_NO, "letter": STEMS["letter"] + FIN_LETTER,
         "text": f"{STEMS['text']}\n{SHORT_INSTRUCTION}"}
"""The question every domain asks for each template, after its prompt rule."""
OWN_INSTRUCTIONS = {"letter": f"\n{LETTER_INSTRUCTION}", "yesno": f"\n{SHORT_INSTRUCTION}",
                    "text": f"\n{SHORT_INSTRUCTION}", "number": f"\n{SHORT_INSTRUCTION}"}
"""What ends a domain's own question of each format, as LLaVA-1.5's data binds them (Fin's prompt rule adds
Fin's own suffixes instead)."""


def _prompt_rule(task: str) -> Callable[[str, str], str] | None:
    for specs in BUILTIN.values():
        for spec in specs:
            if spec.name == task:
                return spec.prompt if spec.prompt_rule else None
    return None  # a task without a built-in spec (Unseen) is asked as written


def written_question(task: str, family: str, answer: str) -> str:
    """The text to write for `task` so that its prompt rule turns it into `ASKED[family]`: the stem where
    the rule adds the suffix (Fin), the whole question where the task has no rule."""
    prompt, asked = _prompt_rule(task) or (lambda text, _: text), ASKED[family]
    for text in (STEMS[family], asked):
        if prompt(text, answer) == asked:
            return text
    raise ValueError(f"the prompt rule of {task} changes the shared {family} question; adapt the templates")


def shared_item(task: SynthTask, rng: random.Random, size: int, shared_look: bool = False) -> SynthItem:
    """One shared-format item of `task`: a template drawn by the task's mix, its rule for it, the asked text."""
    if task.shared is None:
        raise ValueError(f"synthetic task {task.name} has no shared-format rule")
    family = rng.choices(list(task.mix), weights=list(task.mix.values()))[0]
    item = task.shared(rng, family, size, SHARED_LOOK if shared_look else OWN_LOOK)
    extra = {"question_type": f"shared_{family}", **item.extra, "format": "shared", "family": family,
             "answer_format": family}
    if family == "letter":
        extra["choices"] = list(LETTER_OPTIONS)
    return replace(item, question=written_question(task.name, family, item.answer), extra=extra)


def own_item(task: SynthTask, item: SynthItem, overlap: float) -> SynthItem:
    """A domain's own item with the instruction of its answer format (unless its prompt rule adds one) and
    the format in its row (`format: "own"` too when some items are shared)."""
    fmt = task.formats[item.extra["question_type"]]
    question = item.question if _prompt_rule(task.name) else item.question + OWN_INSTRUCTIONS[fmt]
    extra = {**item.extra, **({"format": "own"} if overlap else {}), "answer_format": fmt}
    return replace(item, question=question, extra=extra)


def knob_rng(seed: int, task: str, split: SeedSplit, index: int) -> random.Random:
    """The generator of an item's two knob decisions, apart from the one that draws it."""
    return random.Random(f"mllmcl-synth/{seed}/{task}/{split}/{index}/knobs")


def draw_item(task: SynthTask, seed: int, split: SeedSplit, index: int, size: int, overlap: float = 0.0,
              visual_overlap: float = 0.0) -> SynthItem:
    """Item `index` of `split` of `task`: shared-format with probability `overlap`, in the shared look with
    probability `visual_overlap` (decided by `knob_rng`). Validation items are drawn like test items. Tasks
    without shared rules (ACL) are drawn as they are."""
    rng = item_rng(seed, task.name, split, index)
    drawn_as = "test" if split == "val" else split
    if task.shared is None:
        return task.draw(rng, drawn_as, size)
    knobs = knob_rng(seed, task.name, split, index)
    shared_format, shared_look = knobs.random() < overlap, knobs.random() < visual_overlap
    if shared_format:
        return shared_item(task, rng, size, shared_look)
    return own_item(task, task.draw(rng, drawn_as, size, look=SHARED_LOOK if shared_look else OWN_LOOK), overlap)
