"""Fuzz: `mllmcl score` — the official test.json (questions), the predictions .jsonl, the task name as typed,
and the MMT-Bench submission it may write — for every task's scorer.

Property: the command prints its JSON summary (exit 0), or one line `mllmcl: error: …` naming the
questions file, the predictions file (with the line), the submission file or the task, exits 2 and writes
no submission.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fuzzkit import (SPECIAL_TEXT, TEXT, assert_keeps_promise, cli, encode, fuzz, json_file, jsonl_file,
                     snapshot)
from mllmcl.eval.scorers import OCR_HME

QUESTIONS = {
    "RS": [{"question_id": "q1", "image": "RS/a.png", "text": "Is there a road?", "answer": "yes"},
           {"question_id": 2, "image": "RS/b.png", "text": "How many?", "answer": 3}],
    "Med": [{"question_id": "m1", "image": "x.png", "text": "Is it benign?", "answer": "no"}],
    "AD": [{"question_id": "a1", "image": "x.png", "text": "What should the car do?", "answer": "Stop."}],
    "Sci": [{"question_id": "s1", "image": "Sci/AI2D_1.png", "text": "Which?", "answer": "B"},
            {"question_id": "s2", "image": ["MapQA_2.png"], "text": "Which states are red?", "answer": "Ohio,Texas"}],
    "Fin": [{"question_id": "f1", "image": "x.png", "text": "Up?", "answer": "Yes"}],
    "OCR": [{"question_id": "o1", "text": "Read it", "answer": ["hello", "hi"],
             "answer_type": "Regular Text Recognition"},
            {"question_id": "o2", "text": "Formula?", "answer": "x^2", "answer_type": OCR_HME}],
    "VP": [{"question_id": "v1", "text": "How many?", "answer": "3", "task": "Count"},
           {"question_id": "v2", "text": "Which is closer?", "answer": "(A)", "task": "Depth"}],
    "APP": [{"question_id": "ALL_1", "text": "Next?", "answer": "A"}, {"question_id": "ALL_2", "text": "Next?"}],
    "Math": [{"question_id": "t1", "question": "Which?", "question_type": "multi_choice", "answer_type": "text",
              "choices": ["3", "4"], "answer": "4", "answer_option": "B"},
             {"question_id": "t2", "question": "How many?", "question_type": "free_form", "answer_type": "integer",
              "answer": "7"},
             {"question_id": "t3", "question": "Length?", "question_type": "free_form", "answer_type": "float",
              "answer": "1.5", "precision": 1},
             {"question_id": "t4", "question": "Pick", "question_type": "multi_choice", "answer_type": "text",
              "choices": "['a', 'b']", "answer": "b"}],
}
REPLIES = ["yes", "The answer is B", "7", "Unanswerable", "hello there", "A", "4", "x ^ 2", "1.5", ""]


def _predictions(task: str) -> list[dict]:
    return [{"question_id": row["question_id"], "text": REPLIES[i % len(REPLIES)]}
            for i, row in enumerate(QUESTIONS[task])]


def _score(folder: Path, task: str, typed: str, questions: bytes, predictions: bytes) -> None:
    q, p, submission = folder / "test.json", folder / "merge.jsonl", folder / "out" / "submission.tsv"
    q.write_bytes(questions)
    p.write_bytes(predictions)
    argv = ["score", "--task", typed, "--questions", q, "--predictions", p]
    if task == "APP":
        argv += ["--submission", submission]
    before = snapshot(folder)
    outcome = cli(argv)
    ok = assert_keeps_promise(outcome, [q, p, submission, repr(typed)], before=before, after=snapshot(folder))
    if ok:
        summary = json.loads(outcome.out)
        assert summary["n"] >= 1
        if task == "APP":
            assert submission.read_text().startswith("index\tquestion_id\tprediction\topt\n")
            submission.unlink()


@pytest.mark.slow
@given(data=st.data())
@fuzz(150)
def test_questions_and_predictions(tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("score", numbered=True)
    task = data.draw(st.sampled_from(sorted(QUESTIONS)), label="task")
    typed = data.draw(st.sampled_from([task, task.lower(), task.upper()]), label="typed")
    which = data.draw(st.sampled_from(["questions", "predictions", "both"]), label="which")
    questions = (data.draw(json_file(QUESTIONS[task]), label="questions") if which != "predictions"
                 else encode(QUESTIONS[task]))
    predictions = (data.draw(jsonl_file(_predictions(task)), label="predictions") if which != "questions"
                   else b"\n".join(encode(line) for line in _predictions(task)))
    _score(folder, task, typed, questions, predictions)


@given(typed=st.one_of(TEXT, SPECIAL_TEXT, st.sampled_from(["rs", "Rs", "MATH", "app", "oCr", "vp ", "chess"])))
@fuzz(40)
def test_task_names(tmp_path_factory, typed):
    if typed.startswith("-"):
        typed = " " + typed  # argparse would read it as an option
    folder = tmp_path_factory.mktemp("names", numbered=True)
    q, p = folder / "test.json", folder / "merge.jsonl"
    q.write_bytes(encode(QUESTIONS["Med"]))
    p.write_bytes(b"\n".join(encode(line) for line in _predictions("Med")))
    outcome = cli(["score", "--task", typed, "--questions", q, "--predictions", p])
    if not assert_keeps_promise(outcome, [repr(typed), q]):
        assert str(q) in outcome.err or "RS, Med, AD, Sci, Fin, OCR, Math, VP, APP" in outcome.err, str(outcome)


@pytest.mark.parametrize("task", sorted(QUESTIONS))
def test_every_task_name_in_any_case(tmp_path, task):
    q, p = tmp_path / "test.json", tmp_path / "merge.jsonl"
    q.write_bytes(encode(QUESTIONS[task]))
    p.write_bytes(b"\n".join(encode(line) for line in _predictions(task)))
    results = []
    for typed in (task, task.lower(), task.upper()):
        outcome = cli(["score", "--task", typed, "--questions", q, "--predictions", p])
        assert outcome.code == 0, str(outcome)
        results.append(json.loads(outcome.out))
    assert results[0] == results[1] == results[2]


@given(name=st.sampled_from(["out", "out/x/y.tsv", "."]))
@fuzz(3)
def test_submission_path_that_cannot_be_written(tmp_path_factory, name):
    folder = tmp_path_factory.mktemp("sub", numbered=True)
    q, p = folder / "test.json", folder / "merge.jsonl"
    q.write_bytes(encode(QUESTIONS["APP"]))
    p.write_bytes(b"\n".join(encode(line) for line in _predictions("APP")))
    (folder / "out").write_text("a file where a folder is expected")
    target = folder / name
    before = snapshot(folder)
    outcome = cli(["score", "--task", "app", "--questions", q, "--predictions", p, "--submission", target])
    assert_keeps_promise(outcome, [target], before=before, after=snapshot(folder))
