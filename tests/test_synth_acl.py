"""The four synthetic ability (ACL) tasks: deterministic per seed, drawn fast, carrying the fields of the real
test sets (OCRBench, MathVista, CV-Bench, MMT-Bench) in a form their official scorers accept, with balanced
answers and a test split that differs from training in the documented way. No model is loaded."""
from __future__ import annotations

import collections
import re
import time

import numpy as np
import pytest

from mllmcl.data.synth import item_rng, synth_task
from mllmcl.data.synth.rows import image_name, question_row
from mllmcl.eval.scorers import OCR_CATEGORIES, SCORERS

ACL = ("OCR", "Math", "VP", "APP")
N = 160


def _items(task: str, split: str, n: int = N, seed: int = 0):
    t = synth_task(task)
    return [t.draw(item_rng(seed, task, split, i), split, 48) for i in range(n)]


def _truth(item) -> str:
    """What the test row counts as right: MathVista's option letter, VP's "(A)", else the answer."""
    extra = item.extra
    if extra.get("answer_option"):
        return extra["answer_option"]
    return extra["answer"] if isinstance(extra.get("answer"), str) else item.answer


def _rows(task: str, items):
    return [question_row(it, task, i, image_name(it, "test", i)) for i, it in enumerate(items)]


@pytest.mark.parametrize("task", ACL)
def test_registered_as_acl_with_a_documented_shift(task):
    t = synth_task(task)
    assert t.setting == "acl" and len(t.shift) > 40
    module = __import__(t.draw.__module__, fromlist=["_"])
    assert "shift" in module.__doc__.lower() and "imitates" in module.__doc__.lower()


@pytest.mark.parametrize("task", ACL)
def test_deterministic_per_seed_and_index(task):
    t = synth_task(task)
    for split in ("train", "test"):
        a = t.draw(item_rng(3, task, split, 5), split, 48)
        b = t.draw(item_rng(3, task, split, 5), split, 48)
        assert a.image.tobytes() == b.image.tobytes() and (a.question, a.answer, dict(a.extra)) == (
            b.question, b.answer, dict(b.extra))
        c = t.draw(item_rng(4, task, split, 5), split, 48)
        assert a.image.tobytes() != c.image.tobytes()
        assert a.image.size == (48, 48) and a.image.mode == "RGB"
    assert t.draw(item_rng(0, task, "train", 1), "train", 96).image.size == (96, 96)


@pytest.mark.parametrize("task", ACL)
def test_fast_enough(task):
    t = synth_task(task)
    start = time.perf_counter()
    for i in range(100):
        t.draw(item_rng(0, task, "train", i), "train", 48)
    assert (time.perf_counter() - start) / 100 < 0.01  # well under 5 ms on a free core; slack for shared CI


@pytest.mark.parametrize("task", ACL)
def test_the_reference_answer_scores_full_marks_with_the_official_scorer(task):
    """Every test row is well formed for its scorer and the stored answer (or, for multiple choice, the letter
    an expert might give instead) is judged correct."""
    scorer = SCORERS.build(task.lower())
    items = _items(task, "test", 60)
    for row, it in zip(_rows(task, items), items):
        assert scorer.judge(row, it.answer) == 1.0, row
        if task == "Math" and row["question_type"] == "multi_choice":
            assert scorer.judge(row, row["answer_option"]) == 1.0


@pytest.mark.parametrize("task", ACL)
def test_answers_are_balanced(task):
    """No single answer (letter, word or number) is right for more than a small share of the items."""
    for split in ("train", "test"):
        items = _items(task, split, 400)
        answers = collections.Counter(_truth(it) for it in items)
        top = answers.most_common(1)[0][1] / len(items)
        limit = {"OCR": 0.15, "Math": 0.3, "VP": 0.4, "APP": 0.35}[task]
        assert top <= limit, (split, answers.most_common(3))
    if task in ("VP", "APP"):  # every option letter is used
        letters = {_truth(it).strip("()") for it in _items(task, "test")}
        assert letters == set("ABCD")


def test_ocr_rows_carry_ocrbench_fields():
    for it in _items("OCR", "test"):
        assert it.extra["answer_type"] in OCR_CATEGORIES
        accepted = it.extra["answer"]
        assert isinstance(accepted, list) and it.answer in accepted
        assert it.answer.isdigit() or it.answer.isalpha()
    categories = {it.extra["answer_type"] for it in _items("OCR", "train")}
    assert len(categories) >= 4


def test_math_rows_carry_mathvista_fields():
    seen = collections.Counter()
    for it in _items("Math", "test"):
        e = it.extra
        seen[e["question_type"]] += 1
        assert it.question.startswith("Hint: Please answer the question")
        assert "\nQuestion: " in it.question
        if e["question_type"] == "free_form":
            assert e["answer_type"] == "integer" and e["choices"] is None and e["answer_option"] is None
            assert str(int(it.answer)) == it.answer
            assert "requiring an integer answer" in it.question
        else:
            assert e["question_type"] == "multi_choice" and e["answer_type"] == "text"
            choices = e["choices"]
            assert it.answer in choices and e["answer_option"] == "ABCDEFG"[choices.index(it.answer)]
            block = "\nChoices:\n" + "\n".join(f"({chr(65 + i)}) {c}" for i, c in enumerate(choices))
            assert it.question.endswith(block)
            # an option text never contains another, so MathVista's text prefetch is unambiguous
            assert all(a == b or a.lower() not in b.lower() for a in choices for b in choices)
    assert seen["free_form"] > 30 and seen["multi_choice"] > 30


def test_vp_rows_carry_cvbench_fields():
    tasks = collections.Counter()
    for it in _items("VP", "test"):
        e = it.extra
        tasks[e["task"]] += 1
        assert (e["type"], e["task"]) in {("2D", "Count"), ("2D", "Relation"), ("3D", "Depth"), ("3D", "Distance")}
        assert re.fullmatch(r"\([A-D]\)", e["answer"])  # the test row's answer, as CV-Bench stores it
        index = "ABCD".index(e["answer"][1])
        assert index < len(e["choices"])
        assert it.answer == f"{e['choices'][index]} {e['answer']}"  # the training target names the option first
        block = "\n".join(f"({chr(65 + i)}) {c}" for i, c in enumerate(e["choices"]))
        assert it.question.endswith(" Select from the following choices.\n" + block)
    assert set(tasks) == {"Count", "Relation", "Depth", "Distance"}


def test_app_rows_are_letter_multiple_choice():
    for it in _items("APP", "test"):
        assert it.answer in "ABCD" and len(it.answer) == 1
        assert "\nA. " in it.question and "\nD. " in it.question


def _mean(items) -> np.ndarray:
    return np.mean([np.asarray(it.image, dtype=np.float32).reshape(-1, 3).mean(0) for it in items], axis=0)


def _corner(items) -> float:
    return float(np.mean([np.asarray(it.image, dtype=np.float32)[:2, :2].mean() for it in items]))


def test_test_split_is_shifted_as_documented():
    # OCR: paper and word/digit items sit on a dark desk in test (dark corner), fill the image in train
    def paper(split):
        return [it for it in _items("OCR", split)
                if it.extra["answer_type"] in ("Digit String Recognition", "Regular Text Recognition")]
    assert _corner(paper("train")) > 200 and _corner(paper("test")) < 120
    # APP: light theme in train, dark theme in test
    assert _mean(_items("APP", "train")).mean() > _mean(_items("APP", "test")).mean() + 40
    # VP: the backdrop/wall palette differs (test is bluer)
    train, test = _mean(_items("VP", "train")), _mean(_items("VP", "test"))
    assert test[2] - test[0] > train[2] - train[0] + 20
    # Math: rendered sums on a card on a dark desk in test, on paper filling the image in train
    def sums(split):
        return [it for it in _items("Math", split) if "expression" in it.question or "calculation" in it.question]
    assert _corner(sums("train")) > 200 and _corner(sums("test")) < 120
    # ... and the same families in both splits
    kinds = {split: {it.question.split("Question: ")[1].split()[0] for it in _items("Math", split)}
             for split in ("train", "test")}
    assert kinds["train"] == kinds["test"] and len(kinds["train"]) >= 3


@pytest.mark.parametrize("task", ACL)
def test_questions_fit_the_tiny_backbone(task):
    """Prompt + image tokens + answer stay inside the tiny model's 160-token training window."""
    from tokenizers import Tokenizer

    from mllmcl.models.tiny import WEIGHTS_DIR, TinyConfig

    tok = Tokenizer.from_file(str(WEIGHTS_DIR / "tokenizer.json"))
    longest = max(len(tok.encode(f"USER: {it.question} ASSISTANT: {it.answer}").ids)
                  for it in _items(task, "test", 60) + _items(task, "train", 60))
    assert longest + 36 + 4 <= TinyConfig().max_length
