"""MathVista offline: VLMEvalKit's prefetch exactly, then the rule extractor, then the exact check."""
import json
from pathlib import Path

import pytest

from mllmcl.core.errors import UserError
from mllmcl.eval import get_scorer
from mllmcl.eval.judge import OpenAIExtractor, build_prompt
from mllmcl.eval.mathvista import check, decide, extract, extract_number, infer_option, prefetch

MATHVISTA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mathvista"
OPTS = {"A": "135°", "B": "140°", "C": "145°", "D": "150°"}


def mc(choices=("135°", "140°", "145°", "150°"), option="C", **extra):
    return {"question_id": "m", "question": "Q", "question_type": "multi_choice", "answer_type": "text",
            "choices": list(choices), "answer": choices[ord(option) - 65], "answer_option": option, **extra}


def ff(answer, answer_type="integer"):
    return {"question_id": "f", "question": "Q", "question_type": "free_form", "answer_type": answer_type,
            "choices": None, "answer": answer, "answer_option": None}


# ------------------------------------------------------------------------------------------ prefetch

@pytest.mark.parametrize("text, letter", [
    ("The answer is C", "C"),
    ("(C) 145°", "C"),                      # brackets are separators
    ("C.", "C"),
    ("**C**", "C"),
    ("Answer: c", None),                    # lower-case letters are not options; no option text either
    ("A or C", None),                       # two letters: no letter; no option text: nothing
    ("It measures 145°", "C"),              # no letter token: the one option text contained
    ("140° or 145°", None),                 # two option texts
    ("Cannot determine the answer", "Z"),   # a refusal is the non-option Z
    ("Z", "Z"),
    ("The answer is E", None),              # E is not among four choices
])
def test_infer_option_is_vlmevalkits_can_infer(text, letter):
    assert infer_option(text, OPTS) == letter


def test_prefetch_multiple_choice_decides_right_and_wrong():
    assert prefetch(mc(), "The answer is C") == "C"
    assert prefetch(mc(), "The answer is B") == "B"          # decided, and wrong
    assert decide(mc(), "The answer is B").by == "prefetch"
    assert decide(mc(), "The answer is B").credit == 0.0
    assert decide(mc(), "Cannot determine the answer").credit == 0.0


def test_prefetch_free_form_only_decides_correct_raw_numbers():
    assert prefetch(ff("4"), "4") == "4"
    assert prefetch(ff("4"), " 4 ") == " 4 "                 # int() accepts surrounding whitespace
    assert prefetch(ff("4"), "5") is None                    # a wrong raw number is left to the extractor
    assert prefetch(ff("4"), "The answer is 4") is None
    assert prefetch(ff("1.2", "float"), "1.20") == "1.20"
    assert prefetch(ff("4"), "4.0") is None                  # int("4.0") fails
    assert prefetch(ff("[1, 2]", "list"), "[1, 2]") is None


def test_a_correct_zero_is_not_prefetched_but_still_scores():
    assert prefetch(ff("0"), "0") is None                    # VLMEvalKit tests the prefetch result for truth
    decision = decide(ff("0"), "0")
    assert decision.by == "rules" and decision.credit == 1.0


# --------------------------------------------------------------------------------------------- check

def test_check_is_exact_and_lists_never_score():
    assert check(ff("1.2", "float"), "1.20")
    assert not check(ff("1.2", "float"), "1.25")             # no tolerance, no rounding to precision
    assert not check(ff("4"), "4.0")
    assert not check(ff("[1, 2]", "list"), "[1, 2]")         # VLMEvalKit compares str(None) here
    assert check(mc(), "C") and check(mc(), "(C) 145°") and not check(mc(), "B")


# ------------------------------------------------------------------------------------ rule extractor

@pytest.mark.parametrize("text, number", [
    ("The answer is 100 g", "100"),
    ("The answer is 1,200", "1200"),
    ("The answer is -3.5 degrees", "-3.5"),
    ("The answer is 50%", "50"),
    ("The answer is three", "3"),
    ("There are 3 dogs and 2 cats, so 5", "5"),              # no cue: the last number
    ("The answer is 7, not 8", "7"),                         # after a cue: the first number
    ("The answer is 10^8", "100000000"),
    ("The answer is 1.00 × 10^5 N/C", "100000"),
    ("The answer is 1/5", "0.2"),
    ("The area is 1000.8 cm^2", "1000.8"),                   # the exponent of a unit is not a number
    ("Version v1.5 is shown", None),
    ("I cannot tell", None),
])
def test_extract_number(text, number):
    assert extract_number(text) == number


def test_extract_free_form_by_answer_type():
    assert extract(ff("4"), "The answer is 4.0") == "4"       # an integral value asked as an integer
    assert extract(ff("4.0", "float"), "The answer is 4.0") == "4.0"
    assert extract(ff("[1, 2]", "list"), "The answer is [1, 2]") == "[1, 2]"
    assert decide(ff("[1, 2]", "list"), "The answer is [1, 2]").credit == 0.0
    assert decide(ff("1000"), "The answer is 1,000 g") == decide(ff("1000"), "The answer is 1000 g")
    assert decide(ff("1000"), "The answer is 1,000 g").credit == 1.0


@pytest.mark.parametrize("choices, option, text", [
    (("135°", "140°", "145°", "150°"), "C", "Between A and C, the answer is C."),  # two letters; a cue
    (("135°", "140°", "145°", "150°"), "B", "A and C are wrong; the correct option B fits"),
    (("14", "140", "1400", "7"), "B", "It is 140 in total."),       # "14" inside "140" is not a match
    (("135°", "140°", "145°", "150°"), "C", "The angle measures 145 degrees."),  # numeric value of an option
    (("3/11", "8/11", "6/11", "3/5"), "B", "The fraction is 8 / 11 of the shape"),
])
def test_extract_option_when_the_prefetch_cannot(choices, option, text):
    row = mc(choices, option)
    assert prefetch(row, text) is None
    decision = decide(row, text)
    assert decision.by == "rules" and decision.answer == option and decision.credit == 1.0


def test_article_a_after_a_cue_is_not_an_option():
    assert extract(mc(), "The answer is A triangle with D, E sides") is None


def test_multi_choice_fields_are_validated():
    with pytest.raises(UserError, match="choices"):
        decide({**mc(), "choices": []}, "C")
    derived = {**mc(), "answer_option": None}                # answer_option derived from the answer
    assert decide(derived, "C").credit == 1.0


# --------------------------------------------------------------------------------------- LLM extractor

def test_a_plugged_in_extractor_decides_what_the_prefetch_leaves():
    calls = []

    def fake(row, prediction):
        calls.append(prediction)
        return "4" if "four" in prediction else None

    scorer = get_scorer("math", extractor=fake)
    rows = {1: ff("4") | {"question_id": 1}, 2: ff("7") | {"question_id": 2}, 3: ff("9") | {"question_id": 3}}
    result = scorer.score(rows, {1: "four apples", 2: "7", 3: "The answer is 9"})
    assert calls == ["four apples", "The answer is 9"]        # the prefetched item never reaches the LLM
    assert result["extracted_by_llm"] == 1 and result["extracted_by_rules"] == 1 and result["prefetched"] == 1
    assert result["accuracy"] == 100.0


def test_openai_extractor_builds_its_request_without_calling():
    extractor = OpenAIExtractor("http://localhost:8000/v1/", "m")
    assert extractor.endpoint() == "http://localhost:8000/v1/chat/completions"
    prompt = build_prompt("Question: How many?", "There are 4.")
    assert prompt.endswith("Question: How many?\nModel reply: There are 4.\nExtracted answer:")


# ------------------------------------------------------------------------------------------ real data

@pytest.mark.skipif(not (MATHVISTA / "test.json").is_file(),
                    reason=f"MathVista testmini not found at {MATHVISTA} (shared data folder is not beside the repo)")
def test_llava_on_mathvista_testmini_offline():
    rows = {r["question_id"]: r for r in json.loads((MATHVISTA / "test.json").read_text())}
    predictions = [json.loads(line) for line in (MATHVISTA / "predictions_llava-1.5-7b.jsonl").open()]
    result = get_scorer("math").score(rows, predictions)
    # the paper's 30.20 used gpt-4o-mini as the extractor; the offline rules give this, deterministically
    assert result["accuracy"] == 33.0 and result["hits"] == 330 and result["n"] == 1000
    assert result["prefetched"] == 541 and result["extracted_by_rules"] == 458 and result["undecided"] == 1
