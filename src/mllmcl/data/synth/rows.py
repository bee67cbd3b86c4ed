"""Drawn items as rows of the official MLLM-CL files: LLaVA conversations for training, flat question
rows for testing. The writer and the calibration bench share these so both see exactly one format."""
from __future__ import annotations

from mllmcl.data.synth.base import SynthItem

FORMAT_FIELDS = ("format", "family", "answer_format")
"""Item fields that training rows carry too: whether the question is in a shared format, and which."""


def image_name(item: SynthItem, split: str, index: int) -> str:
    """`images/<source>_<split>_<index>.png`; Sci's scorer picks its rule from the prefix before `_`."""
    prefix = f"{item.source}_" if item.source else ""
    return f"images/{prefix}{split}_{index:05d}.png"


def conversation_row(item: SynthItem, task: str, index: int, image: str) -> dict:
    """A training row in LLaVA format: one human turn with the `<image>` placeholder, one answer; plus the
    item's question-format fields where it has them (`format`, `family`, `answer_format`; `overlap` > 0)."""
    row = {
        "id": f"{task}_train_{index:05d}",
        "image": image,
        "conversations": [
            {"from": "human", "value": "<image>\n" + item.question},
            {"from": "gpt", "value": item.answer},
        ],
    }
    row.update({key: item.extra[key] for key in FORMAT_FIELDS if key in item.extra})
    return row


def question_row(item: SynthItem, task: str, index: int, image: str, split: str = "test") -> dict:
    """A test (or validation) row: `question_id` (`<task>_<split>_<index>`), `image`, `text` (the prompt,
    fed as is), `answer`, plus the task's own fields (`answer_type`, `choices`, `type`, …) from
    `item.extra`; `extra` may override `answer` (OCR's list of accepted strings)."""
    row = {"question_id": f"{task}_{split}_{index:05d}", "image": image, "text": item.question,
           "answer": item.answer}
    row.update(item.extra)
    return row
