"""The records the engine consumes and the image loader every data path shares."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Union

from PIL import Image

from mllmcl.errors import UserError

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
