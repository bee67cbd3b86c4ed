"""The official MR-LoRA router prompt and letter maps, byte-exact, in one place.

The released router (github bjzhb666/MLLM-CL @ 80bf389, `ETrain/Eval/LLaVA/CoIN/model_agents_select_lora.py`
for DCL, `model_agents_select_lora_ability.py` for ACL) asks the MLLM, in one human turn,

    "<image>\\n" + ROUTING_PROMPT[setting] + question + "\\n" + AFTER_QUESTION

where `question` is the test row's `text` with `<image>` removed and stripped, and reads one letter back.
The letters name the experts in a fixed order that is *not* the training order (`model_agents_select_acc.py`
scores routing with the same map). Its router-training rows (`task5Router_train20.json`,
`Router_train20.json`, MLLM-CL-ReplayData `router_*/task*.json`) are read by the loader with
`parse_official_prompt`: the bare question and, from the letter, the task.

The strings are facts needed for compatibility (a router trained on them must be prompted with the same
bytes); trailing spaces are part of them. tests/test_official_router.py pins their SHA-256.
"""
from __future__ import annotations

import re
from types import MappingProxyType
from typing import Mapping

from mllmcl.core.errors import UserError

IMAGE_TOKEN = "<image>"

# Lines ending in two spaces carry them in the released strings (markdown line breaks); keep them.
_DCL = (
    "You are a helpful assistant router. There are five expert models, each specializing in one of the "
    "following domains: finance(stock), science, medical imaging, autonomous driving, and remote sensing,.\n"
    "\n"
    "Your task is to select the most suitable model based on the provided visual content, user question, and "
    "model descriptions. Consider the expertise of each model carefully, and select the one best equipped to "
    "handle the given question. \n"
    "\n"
    "**Important Instructions:**  \n"
    "- Respond **only** with the letter (A,B,C,D,E) corresponding to the most suitable model.  \n"
    "- Do **not** attempt to answer the user's question directly.  \n"
    "\n"
    "**Model Pool:**  \n"
    "\n"
    "- **A**: A financial expert specializing in stock market analysis using candlestick charts. This model "
    "excels at trend prediction and technical indicator analysis.\n"
    "- **B**: A science expert with proficiency in biology, map interpretation, physics, and chemistry.\n"
    "- **C**: A medical imaging expert, primarily focused on pathology, including cell sections and natural "
    "images of medical conditions.  \n"
    "- **D**: An autonomous driving expert specializing in ego-view scene understanding, including coordinate "
    "prediction and action planning and other driving-related tasks. The input image is an image concatenated "
    "by 6 camera views.\n"
    "- **E**: A remote sensing expert, adept at analyzing aerial or satellite images. This model excels at "
    "object counting, presence detection, and area estimation.\n"
    "\n"
    "Here is the user's question: "
)

# Differs from DCL in layout too: no blank line after the first sentence nor after "**Model Pool:**".
_ACL = (
    "You are a helpful assistant router. There are four expert models, each specializing in one of the "
    "following domains: OCR, math & logic, counting, and GUI navigation.\n"
    "Your task is to select the most suitable model based on the provided visual content, user question, and "
    "model descriptions. Consider the expertise of each model carefully, and select the one best equipped to "
    "handle the given question. \n"
    "\n"
    "**Important Instructions:**  \n"
    "- Respond **only** with the letter (A,B,C,D) corresponding to the most suitable model.  \n"
    "- Do **not** attempt to answer the user's question directly.  \n"
    "\n"
    "**Model Pool:**  \n"
    "- **A**: This model excels in OCR tasks, including text extraction, handwriting recognition, and document "
    "analysis.\n"
    "- **B**: This model excels in counting the number of objects in the image. However, it struggles to exact "
    "text in an image.\n"
    "- **C**: This model is an expert in math and logic, including solving equations, geometry, and logical "
    "reasoning. It is capable of on puzzle test figures, algebraic reasoning over functional plots, and "
    "scientific reasoning with academic paper figures.\n"
    "- **D**: This model is an expert in GUI navigation, including identifying buttons, text fields, and other "
    "UI elements from screen shots. It is capable of giving coordinates of the elements in the image and conduct "
    "action on the elements.\n"
    "\n"
    "Here is the user's question: "
)

ROUTING_PROMPT: Mapping[str, str] = MappingProxyType({"dcl": _DCL, "acl": _ACL})
"""Setting → the text before the question (the released `ROUTING_PROMPT`)."""

AFTER_QUESTION = ("You only need to select the suitable model and do not answer the question. JUST answer with "
                  "the model's letter from the given choices directly.")
"""The instruction after the question (the released `PROMPT_AFTER_QUESTION`, the same in both settings),
joined to the question by one newline."""

OFFICIAL_LETTERS: Mapping[str, Mapping[str, str]] = MappingProxyType({
    # model_agents_select_lora.py: names "Fin Sci PathVQA DriveLM RS" in letter order
    "dcl": MappingProxyType({"A": "Fin", "B": "Sci", "C": "Med", "D": "AD", "E": "RS"}),
    # model_agents_select_lora_ability.py: names "OCR Count Math APP"; the counting expert is our VP task
    "acl": MappingProxyType({"A": "OCR", "B": "VP", "C": "Math", "D": "APP"}),
})
"""Setting → {letter: task name} of the official router."""

# Any official router prompt opens with this sentence; a row that has it but does not parse is malformed,
# not a row of another format.
_MARKER = "You are a helpful assistant router."


def _setting(setting: str) -> str:
    if setting not in ROUTING_PROMPT:
        raise UserError(f"no official router prompt for setting {setting!r}; known: {', '.join(ROUTING_PROMPT)}")
    return setting


def bare(question: str) -> str:
    """The question as the official router inserts it: `<image>` removed, stripped."""
    return question.replace(IMAGE_TOKEN, "").strip()


def official_prompt(question: str, setting: str, *, image_token: bool = False) -> str:
    """The official router prompt for `question` in `setting`, byte-exact. With `image_token`, it is the
    whole human turn of the released router (`"<image>\\n"` first); without, the text the engine pairs with
    the image (as the loader's `Sample.question` holds it)."""
    text = ROUTING_PROMPT[_setting(setting)] + bare(question) + "\n" + AFTER_QUESTION
    return f"{IMAGE_TOKEN}\n{text}" if image_token else text


def _loose(text: str) -> str:
    # each whitespace run of the official text matches any whitespace run (or none, where it ends a line):
    # rows re-saved by an editor that strips trailing spaces, or with CRLF line ends, still parse
    return r"\s*".join(re.escape(word) for word in text.split())


_PATTERNS = {s: re.compile(r"\s*" + _loose(p) + r"(?P<question>.*?)" + _loose(AFTER_QUESTION) + r"\s*",
                           re.DOTALL) for s, p in ROUTING_PROMPT.items()}


def parse_official_prompt(text: str, setting: str) -> str | None:
    """The bare question inside an official router prompt of `setting` (the inverse of `official_prompt`:
    `parse_official_prompt(official_prompt(q, s), s) == bare(q)`), or None when `text` is not one. An
    `<image>` placeholder is ignored; whitespace differences in the fixed text are tolerated (trailing spaces
    lost, CRLF line ends), the question itself is returned stripped. An empty question is None."""
    text = bare(text)
    prompt = ROUTING_PROMPT[_setting(setting)]
    tail = "\n" + AFTER_QUESTION
    if text.startswith(prompt) and text.endswith(tail) and len(text) >= len(prompt) + len(tail):
        question = text[len(prompt):len(text) - len(tail)].strip()
    else:
        match = _PATTERNS[setting].fullmatch(text)
        question = match.group("question").strip() if match else ""
    return question or None


def looks_official(text: str) -> bool:
    """Whether `text` claims to be an official router prompt (of any setting), parsable or not."""
    return _MARKER in text or AFTER_QUESTION in text


def letter_map(setting: str) -> str:
    """The letter map of `setting` as text, for messages: "A=Fin, B=Sci, …"."""
    return ", ".join(f"{letter}={task}" for letter, task in OFFICIAL_LETTERS[_setting(setting)].items())
