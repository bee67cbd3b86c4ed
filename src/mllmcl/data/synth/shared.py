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

`skill` ∈ [0, 1] is the share of items asking a *common skill*: one of `SKILL_STEMS`, questions about a
marker badge drawn over the domain's own image (is there one, which colour, by letter or by name), whose rule
is the same in every domain. The real domains share skills (presence, counting, reading a value) besides
their own content; a later task trains a common skill again, so sequential fine-tuning keeps it while it
overwrites each domain's own rules, and the forgetting is partial, as LLaVA-1.5-7B's is. A skill item is
asked in its domain's mix of formats, so the question still says nothing about the domain. The default
benchmark is calibrated on the validation split with it (`DEFAULT_SKILL`).

The decisions are made per item by a generator of its own, seeded like the item's (seed, task, split,
index) but apart from it: an item that is not shared at overlap p is exactly the item drawn at overlap 0,
and raising a knob only turns more items shared (an item is shared when its fixed uniform draw is below p).
A skill item (third draw) replaces the item drawn otherwise.
Every row carries `answer_format` (the format its question asks for); shared rows also `format: "shared"`
and `family`, own rows (overlap < 1) `format: "own"`, skill rows `format: "skill"`.
"""
from __future__ import annotations

import random
from dataclasses import replace
from typing import Callable

from PIL import ImageDraw

from mllmcl.data.synth.base import SeedSplit, SynthItem, SynthTask, item_rng, jitter, letters
from mllmcl.data.synth.draw import NO, OWN_LOOK, SHARED_LOOK, YES
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
MARKERS = {"red": (220, 35, 35), "blue": (35, 75, 225), "yellow": (250, 215, 25), "purple": (135, 50, 185)}
"""The common skill's badge colours (named as the pretraining corpus names them), in letter order."""
SKILL_STEMS = {
    "yesno": "Is there a marker in this image?",
    "letter": "Which colour is the marker?\n" + "\n".join(f"{mark}. {name}" for mark, name in zip(letters(4), MARKERS)),
    "text": "What colour is the marker?",
}
SKILL_ASKED = {"yesno": SKILL_STEMS["yesno"] + FIN_YES_NO, "letter": SKILL_STEMS["letter"] + FIN_LETTER,
               "text": f"{SKILL_STEMS['text']}\n{SHORT_INSTRUCTION}"}
"""The question every domain asks for each common-skill template, after its prompt rule."""
BADGE = 0.5
"""The marker badge's side, as a share of the image's: the tiny model learns answers carried by a large
area of one colour within an expert's budget; a badge of a quarter of the side was learned unreliably."""
DEFAULT_SKILL = 0.5
"""The share of skill items of the default DCL benchmark, chosen on the validation split (docs/pilot.md)."""
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


def written_question(task: str, family: str, answer: str, stems: dict[str, str] = STEMS,
                      asked: dict[str, str] = ASKED) -> str:
    """The text to write for `task` so that its prompt rule turns it into `asked[family]`: the stem where
    the rule adds the suffix (Fin), the whole question where the task has no rule."""
    prompt, asked = _prompt_rule(task) or (lambda text, _: text), asked[family]
    for text in (stems[family], asked):
        if prompt(text, answer) == asked:
            return text
    raise ValueError(f"the prompt rule of {task} changes the shared {family} question; adapt the templates")


def _template(task: SynthTask, rng: random.Random) -> str:
    """The answer format of a shared or skill item of `task`, drawn by the task's mix."""
    if task.shared is None:
        raise ValueError(f"synthetic task {task.name} has no shared-format rule")
    return rng.choices(list(task.mix), weights=list(task.mix.values()))[0]


def shared_item(task: SynthTask, rng: random.Random, size: int, shared_look: bool = False) -> SynthItem:
    """One shared-format item of `task`: a template drawn by the task's mix, its rule for it, the asked text."""
    family = _template(task, rng)
    item = task.shared(rng, family, size, SHARED_LOOK if shared_look else OWN_LOOK)
    extra = {"question_type": f"shared_{family}", **item.extra, "format": "shared", "family": family,
             "answer_format": family}
    if family == "letter":
        extra["choices"] = list(LETTER_OPTIONS)
    return replace(item, question=written_question(task.name, family, item.answer), extra=extra)


def skill_item(task: SynthTask, rng: random.Random, size: int, shared_look: bool = False) -> SynthItem:
    """One common-skill item of `task`: a template drawn by the task's mix, over an image of the domain (its
    shared-format drawing, whose own answer is not asked) with a marker badge in one corner, or (yes/no: No)
    none. The rule is the same in every domain."""
    family = _template(task, rng)
    image = task.shared(rng, family, size, SHARED_LOOK if shared_look else OWN_LOOK).image
    colour = rng.choice(list(MARKERS))
    present = family != "yesno" or rng.random() < 0.5
    if present:
        image = marked(image, rng, MARKERS[colour])
    answer = {"yesno": YES if present else NO, "letter": letters(4)[list(MARKERS).index(colour)],
              "text": colour}[family]
    extra = {"question_type": f"skill_{family}", "format": "skill", "family": family, "answer_format": family}
    if family == "letter":
        extra["choices"] = list(MARKERS)
    return SynthItem(image, written_question(task.name, family, answer, SKILL_STEMS, SKILL_ASKED), answer, extra)


def marked(image, rng: random.Random, colour: tuple[int, int, int]):
    """`image` with a dark-edged square badge of `colour` (`BADGE` of the side) in a random corner."""
    image = image.copy()
    side = image.size[0]
    badge = max(2, round(side * BADGE))
    x = rng.choice((1, side - badge - 1))
    y = rng.choice((1, side - badge - 1))
    ImageDraw.Draw(image).rectangle((x, y, x + badge - 1, y + badge - 1), fill=jitter(rng, colour, 10),
                                    outline=(20, 20, 20))
    return image


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
              visual_overlap: float = 0.0, skill: float = 0.0) -> SynthItem:
    """Item `index` of `split` of `task`: a common-skill item with probability `skill`, else shared-format
    with probability `overlap`; in the shared look with probability `visual_overlap` (decided by
    `knob_rng`). Validation items are drawn like test items. Tasks without shared rules (ACL) are drawn as
    they are."""
    rng = item_rng(seed, task.name, split, index)
    drawn_as = "test" if split == "val" else split
    if task.shared is None:
        return task.draw(rng, drawn_as, size)
    knobs = knob_rng(seed, task.name, split, index)
    shared_format, shared_look = knobs.random() < overlap, knobs.random() < visual_overlap
    if knobs.random() < skill:
        return skill_item(task, rng, size, shared_look)
    if shared_format:
        return shared_item(task, rng, size, shared_look)
    return own_item(task, task.draw(rng, drawn_as, size, look=SHARED_LOOK if shared_look else OWN_LOOK), overlap)
