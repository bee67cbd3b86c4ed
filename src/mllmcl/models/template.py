"""The LLaVA-1.5 conversation template (vicuna_v1): `{system} USER: <image>\n{question} ASSISTANT: {answer}</s>`,
with further turns appended as `USER: {question} ASSISTANT: {answer}</s>`.

Training text is prompt, target, prompt, target, …; the loss covers the target tokens only. Generation
feeds the prompt and decodes what follows `ASSISTANT:`.
"""
from __future__ import annotations

from dataclasses import dataclass

VICUNA_SYSTEM = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)


@dataclass(frozen=True)
class ChatTemplate:
    """Builds prompt and target strings. `system` is empty for the tiny backbone (it costs sequence length
    and a from-scratch model learns nothing from it) and the vicuna system prompt for LLaVA-1.5 checkpoints."""

    system: str = ""
    image_token: str = "<image>"

    def prompt(self, question: str) -> str:
        """The text up to and including `ASSISTANT:`; a question that already holds the image token keeps it
        where it is (official test files sometimes place it themselves)."""
        question = question.strip()
        if self.image_token not in question:
            question = f"{self.image_token}\n{question}"
        head = f"{self.system} " if self.system else ""
        return f"{head}USER: {question} ASSISTANT:"

    def follow_up(self, question: str) -> str:
        """A later user turn of a multi-turn conversation (no image token, no system prompt)."""
        return f"USER: {question.strip()} ASSISTANT:"

    def pieces(self, turns, eos_token: str) -> list[tuple[str, bool]]:
        """The training text of a conversation `[(question, answer), …]` as consecutive pieces
        `(text, is_target)`: prompt, target, follow-up prompt, target, …"""
        out: list[tuple[str, bool]] = []
        for i, (question, answer) in enumerate(turns):
            out.append((self.prompt(question) if i == 0 else self.follow_up(question), False))
            out.append((self.target(answer, eos_token), True))
        return out

    def target(self, answer: str, eos_token: str) -> str:
        """The assistant's turn as trained: a space, the answer, then the end-of-sequence token."""
        return f" {answer.strip()}{eos_token}"
