"""The official MR-LoRA router prompt and letter maps: byte-exact strings (pinned by hash), building and
parsing prompts, and the letter maps."""
from __future__ import annotations

import hashlib

import pytest

from mllmcl.data import BUILTIN
from mllmcl.data.official_router import (AFTER_QUESTION, OFFICIAL_LETTERS, ROUTING_PROMPT, bare, letter_map,
                                         looks_official, official_prompt, parse_official_prompt)
from mllmcl.core.errors import UserError

# SHA-256 of the released strings (github bjzhb666/MLLM-CL @ 80bf389, ETrain/Eval/LLaVA/CoIN/
# model_agents_select_lora.py and model_agents_select_lora_ability.py: ROUTING_PROMPT, PROMPT_AFTER_QUESTION),
# taken from the released source; a router trained on them must be prompted with exactly these bytes.
PINNED = {"dcl": (1459, "bb3840f0650a49db696b9dc75e2dcd8ef2668c1e38f14c3a2e4e69e0a340932f"),
          "acl": (1364, "972707ddc689393b3e3044ab01140c85cb0bcfea530eb91b06d0931a4ce95232")}
AFTER_PINNED = (143, "707df8ce97f6830f05584b8e716ba434b291fb4390c08dba9fccbd59e0848190")

QUESTIONS = ["How many buildings are there in the image?",
             "Which label marks the larva stage?\nA. B\nB. D\nAnswer with the option's letter from the given choices "
             "directly.",
             "What is written on the sign? Here is the user's question: (a question quoting the prompt)",
             "  padded, with <image> inside  "]


def sha(text: str) -> tuple[int, str]:
    return len(text), hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.parametrize("setting", ["dcl", "acl"])
def test_prompt_strings_are_the_released_bytes(setting):
    assert sha(ROUTING_PROMPT[setting]) == PINNED[setting]
    assert sha(AFTER_QUESTION) == AFTER_PINNED
    # the whitespace that makes them byte-exact: trailing spaces, and the end right after "question: "
    assert "the given question. \n" in ROUTING_PROMPT[setting] and "**Model Pool:**  \n" in ROUTING_PROMPT[setting]
    assert ROUTING_PROMPT[setting].endswith("Here is the user's question: ")


@pytest.mark.parametrize("setting", ["dcl", "acl"])
@pytest.mark.parametrize("question", QUESTIONS)
def test_round_trip(setting, question):
    prompt = official_prompt(question, setting)
    assert prompt == ROUTING_PROMPT[setting] + bare(question) + "\n" + AFTER_QUESTION
    assert parse_official_prompt(prompt, setting) == bare(question)
    whole_turn = official_prompt(question, setting, image_token=True)
    assert whole_turn == "<image>\n" + prompt
    assert parse_official_prompt(whole_turn, setting) == bare(question)
    if question == question.strip() and "<image>" not in question:
        assert parse_official_prompt(prompt, setting) == question


@pytest.mark.parametrize("setting", ["dcl", "acl"])
def test_parse_tolerates_whitespace_of_the_fixed_text_only(setting):
    question = "Is there a road?\nA. yes\nB. no"
    prompt = official_prompt(question, setting)
    stripped_lines = "\n".join(line.rstrip() for line in prompt.split("\n"))  # an editor dropped trailing spaces
    assert parse_official_prompt(stripped_lines, setting) == question
    assert parse_official_prompt(prompt.replace("\n", "\r\n"), setting) == question.replace("\n", "\r\n")
    assert parse_official_prompt(prompt.replace("router.", "router!"), setting) is None  # words must match
    assert parse_official_prompt(prompt[:-1], setting) is None  # the instruction must be whole
    assert parse_official_prompt(question, setting) is None
    assert parse_official_prompt(official_prompt("", setting), setting) is None  # no question at all
    other = "acl" if setting == "dcl" else "dcl"
    assert parse_official_prompt(official_prompt(question, other), setting) is None


def test_letter_maps():
    assert dict(OFFICIAL_LETTERS["dcl"]) == {"A": "Fin", "B": "Sci", "C": "Med", "D": "AD", "E": "RS"}
    assert dict(OFFICIAL_LETTERS["acl"]) == {"A": "OCR", "B": "VP", "C": "Math", "D": "APP"}
    for setting, letters in OFFICIAL_LETTERS.items():
        assert set(letters.values()) == {s.name for s in BUILTIN[setting]}  # every official task, once
        # the prompt's model pool lists exactly these letters, in this order
        pool = [line.split("**")[1] for line in ROUTING_PROMPT[setting].splitlines() if line.startswith("- **")]
        assert pool == list(letters)
    assert letter_map("acl") == "A=OCR, B=VP, C=Math, D=APP"
    with pytest.raises(TypeError):
        OFFICIAL_LETTERS["dcl"]["F"] = "X"  # read-only


def test_unknown_setting_and_marker():
    with pytest.raises(UserError, match="no official router prompt for setting 'mine'"):
        official_prompt("Q?", "mine")
    with pytest.raises(UserError, match="known: dcl, acl"):
        parse_official_prompt("Q?", "mine")
    assert looks_official(official_prompt("Q?", "acl")) and looks_official("Q?\n" + AFTER_QUESTION)
    assert not looks_official("Which expert answers this?")
