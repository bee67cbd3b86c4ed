"""Conversation templates: how a question becomes a prompt and a conversation becomes training text.

`ChatTemplate` is LLaVA-1.5's (vicuna_v1): `{system} USER: <image>\n{question} ASSISTANT: {answer}</s>`, with
further turns appended as `USER: {question} ASSISTANT: {answer}</s>`; LLaVA-1.5 checkpoints ship no template
of their own. `ProcessorTemplate` renders the processor's own chat template (`apply_chat_template`), as the
model was instruction-tuned with (Qwen-VL and the other families, models/families.py).

Training text is prompt, target, prompt, target, …; the loss covers the target tokens only. Generation
feeds the prompt and decodes what follows it.
"""
from __future__ import annotations

import json
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

    def jinja(self, eos_token: str) -> str:
        """This template as a Jinja chat template over OpenAI-style messages (content a string, or parts of
        type text / image / image_url), for a server that renders prompts itself (vLLM's `--chat-template`):
        with the generation prompt it renders exactly `prompt`, and answered turns exactly `target`."""
        def lit(text: str) -> str:  # a Jinja string literal (JSON's escaping is Jinja's)
            return json.dumps(text)

        head, image = lit(f"{self.system} " if self.system else ""), lit(f"{self.image_token}\n")
        token = lit(self.image_token)
        return (
            "{%- for message in messages -%}"
            "{%- if message['role'] == 'user' -%}"
            "{{ (" + head + " if loop.first else '') + 'USER: ' }}"
            "{%- if message['content'] is string -%}"
            "{%- set text = message['content'] | trim -%}"
            "{{ (" + image + " if loop.first and " + token + " not in text else '') + text }}"
            "{%- else -%}"
            "{%- set ns = namespace(text='', image=false) -%}"
            "{%- for part in message['content'] -%}"
            "{%- if part['type'] == 'text' -%}{%- set ns.text = ns.text + part['text'] -%}"
            "{%- elif part['type'] in ('image', 'image_url') -%}{%- set ns.image = true -%}{%- endif -%}"
            "{%- endfor -%}"
            "{%- set text = ns.text | trim -%}"
            "{{ (" + image + " if ns.image and " + token + " not in text else '') + text }}"
            "{%- endif -%}"
            "{{ ' ASSISTANT:' }}"
            "{%- elif message['role'] == 'assistant' -%}"
            "{{ ' ' + (message['content'] | trim) + " + lit(eos_token) + " }}"
            "{%- endif -%}"
            "{%- endfor -%}")


class ProcessorTemplate:
    """The processor's chat template (a Jinja template in `chat_template.jinja`), rendered by transformers.
    A question's image goes first in its user turn, as an image content part; an `<image>` placeholder written
    in the question (as official test files do) is taken out. The same interface as `ChatTemplate`."""

    def __init__(self, processor, image_token: str):
        if not getattr(processor, "chat_template", None):
            raise ValueError("the processor has no chat template")
        self.processor = processor
        self.image_token = image_token
        self.system = ""
        # what the template writes between the generation prompt and the answer's text ("" for ChatML)
        probe, prompt = "\x00", self.prompt("?")
        head = self._render([self._user("?", True), {"role": "assistant", "content": probe}], generation=False)
        if not head.startswith(prompt) or probe not in head:
            raise ValueError("the chat template does not render an answered question as its prompt followed by "
                             "the answer; the label mask cannot be exact")
        self._answer_prefix = head[len(prompt):head.index(probe)]

    def _user(self, question: str, first: bool) -> dict:
        question = " ".join(question.replace("<image>", " ").replace(self.image_token, " ").split())
        parts = ([{"type": "image"}] if first else []) + [{"type": "text", "text": question}]
        return {"role": "user", "content": parts}

    def _render(self, messages: list[dict], generation: bool) -> str:
        # the processor's template, rendered by its tokenizer: the same text as the processor's own
        # apply_chat_template, which some processors (SmolVLM2's) cannot run without their video part
        return self.processor.tokenizer.apply_chat_template(messages, chat_template=self.processor.chat_template,
                                                            tokenize=False, add_generation_prompt=generation)

    def prompt(self, question: str) -> str:
        """The text up to where the assistant's answer begins (the template's generation prompt)."""
        return self._render([self._user(question, True)], generation=True)

    def pieces(self, turns, eos_token: str) -> list[tuple[str, bool]]:
        """The rendered conversation cut into (text, is_target) pieces: each user turn up to the generation
        prompt, then the assistant's turn as the template closes it (its end-of-turn marker is the target's
        end, not `eos_token`)."""
        out: list[tuple[str, bool]] = []
        messages: list[dict] = []
        done = ""
        for i, (question, answer) in enumerate(turns):
            messages.append(self._user(question, i == 0))
            prompt = self._render(messages, generation=True)
            messages.append({"role": "assistant", "content": answer.strip()})
            full = self._render(messages, generation=False)
            if not prompt.startswith(done) or not full.startswith(prompt):
                raise ValueError("the chat template does not render a conversation as a prefix of its continuation; "
                                 "the label mask cannot be exact")
            out += [(prompt[len(done):], False), (full[len(prompt):], True)]
            done = full
        return out

    def target(self, answer: str, eos_token: str) -> str:
        """How the assistant's answer begins right after `prompt` (then `eos_token`)."""
        return f"{self._answer_prefix}{answer.strip()}{eos_token}"
