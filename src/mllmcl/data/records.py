"""The records the engine consumes — `Example` (what training reads), `Query` (what answering reads: no
label) — and the image loader every data path shares."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence, Union

from PIL import Image

from mllmcl.core.errors import UserError

ImageLike = Union[Image.Image, str, Path]


class VQAExample(Protocol):
    """What the engine needs from a training sample: an image, a question and its answer.
    Any record with these attributes works (benchmark samples carry more fields)."""

    image: ImageLike
    question: str
    answer: str


@dataclass(frozen=True)
class Example:
    """A plain image-question-answer triple."""

    image: ImageLike
    question: str
    answer: str


@dataclass(frozen=True)
class Query:
    """What a router and a method answer from: an image, the `question` as fed to the model (the whole
    prompt) and the answer-format `instruction` that prompt carries ("" when none). No task, no answer: only
    the evaluation holds those. `id` names the query for whoever asked (a test row's question_id)."""

    id: str
    image: ImageLike
    question: str
    instruction: str = ""


def split_instruction(prompt: str, instructions: Sequence[str]) -> tuple[str, str]:
    """`prompt` without the answer-format instruction it carries, and that instruction: the one of
    `instructions` found last in it (a format follows its question; the longer one where two end there),
    or "" when it carries none."""
    found = [(prompt.rfind(i), len(i), i) for i in instructions if i and i in prompt]
    if not found:
        return prompt, ""
    at, length, instruction = max(found)
    return (prompt[:at] + prompt[at + length:]).strip(), instruction


def load_image(image: ImageLike) -> Image.Image:
    """Return an RGB PIL image; a path that is missing, a folder, too large or not a decodable image is a
    UserError naming it."""
    if isinstance(image, Image.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    path = Path(image)
    try:
        with Image.open(path) as opened:
            return opened.convert("RGB")
    except FileNotFoundError:
        raise UserError(f"{path}: image file not found") from None
    except IsADirectoryError:
        raise UserError(f"{path}: a folder, not an image file") from None
    except Image.DecompressionBombError as err:  # a header claiming billions of pixels
        raise UserError(f"{path}: image too large to open ({err})") from None
    except Exception as err:  # PIL raises many types for a corrupt file (OSError, SyntaxError, struct.error, …)
        raise UserError(f"{path}: cannot decode image ({type(err).__name__}: {err})") from None
