"""The official MLLM-CL scoring rules, quirk by quirk, and `mllmcl score`."""
import copy
import csv
import json

import pytest

from mllmcl.cli.main import main
from mllmcl.core.errors import UserError
from mllmcl.eval import SCORERS, get_scorer
from mllmcl.eval.files import load_predictions, write_mmt_submission


def judge(scorer, answer, prediction, **fields):
    return get_scorer(scorer).judge({"question_id": 0, "answer": answer, **fields}, prediction)


def test_every_task_is_registered_with_metadata():
    assert SCORERS.names() == ["ad", "app", "fin", "math", "med", "ocr", "rs", "sci", "vp"]
    for name in SCORERS.names():
        scorer = get_scorer(name)
        assert scorer.name == name and scorer.higher_is_better and scorer.description


# ------------------------------------------------------------------ common: Unanswerable, denominator

@pytest.mark.parametrize("task", ["rs", "med", "ad", "sci", "fin"])
def test_unanswerable_scores_zero_but_counts(task):
    rows = {1: {"question_id": 1, "answer": "yes", "image": "AI2D_1.png", "text": "q"},
            2: {"question_id": 2, "answer": "yes", "image": "AI2D_2.png", "text": "q"},
            3: {"question_id": 3, "answer": "yes", "image": "AI2D_3.png", "text": "q"}}
    result = get_scorer(task).score(rows, [{"question_id": 1, "text": "yes"},
                                           {"question_id": 2, "text": "Unanswerable yes"}])
    # question 3 has no prediction: the denominator is the number of prediction lines
    assert result["n"] == 2 and result["n_questions"] == 3
    assert result["credits"] == {1: 1.0, 2: 0.0}
    assert result["accuracy"] == 50.0


def test_unanswerable_is_case_sensitive_and_absent_from_ability_tasks():
    assert judge("med", "yes", "unanswerable, yes") == 1.0
    assert judge("vp", "yes", "Unanswerable yes", task="Count") == 1.0
    assert judge("ocr", "hello", "Unanswerable hello", answer_type="Regular Text Recognition") == 1.0


def test_accuracy_is_printed_with_two_decimals():
    rows = {i: {"question_id": i, "answer": "yes"} for i in range(3)}
    result = get_scorer("med").score(rows, {0: "yes", 1: "no", 2: "no"})
    assert result["accuracy"] == 33.33


def test_unknown_and_duplicate_predictions_are_user_errors():
    rows = {1: {"question_id": 1, "answer": "yes"}}
    with pytest.raises(UserError, match="'q9'"):
        get_scorer("rs").score(rows, [{"question_id": "q9", "text": "yes"}])
    with pytest.raises(UserError, match="more than one"):
        get_scorer("rs").score(rows, [{"question_id": 1, "text": "yes"}, {"question_id": 1, "text": "no"}])
    with pytest.raises(UserError, match="'answer'"):
        get_scorer("rs").score({1: {"question_id": 1}}, [{"question_id": 1, "text": "yes"}])


def test_scoring_never_mutates_its_inputs():
    rows = {1: {"question_id": 1, "answer": ["A", "b"], "answer_type": "Regular Text Recognition"}}
    predictions = [{"question_id": 1, "text": "a"}]
    before = copy.deepcopy((rows, predictions))
    get_scorer("ocr").score(rows, predictions)
    assert (rows, predictions) == before


# ------------------------------------------------------------------------------------ the ai2d rule

@pytest.mark.parametrize("task", ["rs", "ad"])
@pytest.mark.parametrize("answer, prediction, credit", [
    ("Parking Lot", "It is a parking lot.", 1.0),   # GT with a space: substring
    ("parking lot", "parkinglot", 0.0),
    ("3", "13", 1.0),                               # one-word prediction: bare substring
    ("3", "it has 13", 0.0),                        # prediction with a space: " 3", "3 ", "3.", "3," only
    ("3", "there are 3", 1.0),
    ("yes", "Yes, it is", 1.0),
    ("yes.", "yes it is", 1.0),                     # periods leave the GT ...
    ("1.5", "15 m", 1.0),                           # ... so "1.5" becomes "15"
    ("1.5", "1.5 m", 0.0),                          # and no longer matches the prediction's own "1.5"
    ("1.5", "1.5", 0.0),
])
def test_ai2d_rule(task, answer, prediction, credit):
    assert judge(task, answer, prediction) == credit


def test_med_is_a_lowercase_substring():
    assert judge("med", "Yes", "yes") == 1.0
    assert judge("med", "no", "not at all") == 1.0   # the official rule's known leniency
    assert judge("med", "mitosis", "meiosis") == 0.0


# ------------------------------------------------------------------------------------------ sci

@pytest.mark.parametrize("image, prediction, credit", [
    ("images/AI2D_12.png", "b", 1.0),
    ("images/AI2D_12.png", "B.", 0.0),               # exact match only
    ("Sci/TQA_x_1.png", "B", 1.0),
    ("SciVerse_3.png", " b", 0.0),
    ("VQA_1.png", "b", 1.0),
    ("images/ai2d_12.png", "B.", 1.0),               # prefix is case-sensitive: lower-case "ai2d" is MapQA
    ("images/MapQA_12.png", "It is B.", 1.0),        # MapQA without "Which states": substring
])
def test_sci_rule_by_image_prefix(image, prediction, credit):
    assert judge("sci", "B", prediction, image=image, text="What is shown?") == credit


def test_sci_mapqa_partial_credit_without_stripping():
    row = {"image": "MapQA_7.png", "text": "Which states have the highest value in the South?"}
    assert judge("sci", "Texas, Ohio", "texas, ohio", **row) == 1.0
    assert judge("sci", "Texas, Ohio", "texas,ohio", **row) == 0.5       # " ohio" is not among ["texas", "ohio"]
    assert judge("sci", "Texas, Ohio, Utah", "texas, utah", **row) == pytest.approx(2 / 3)
    assert judge("sci", "Texas, Ohio, Utah", "Utah, Texas", **row) == 0.0  # "texas" is not " texas"
    assert judge("sci", "Texas, Ohio", "texas,ohio", image="MapQA_7.png", text="which states …") == 0.0


def test_sci_partial_credit_sums_in_accuracy():
    rows = {i: {"question_id": i, "answer": "a, b", "image": "MapQA_1.png", "text": "Which states?"}
            for i in range(2)}
    result = get_scorer("sci").score(rows, {0: "a, b", 1: "a"})
    assert result["credits"] == {0: 1.0, 1: 0.5} and result["accuracy"] == 75.0


# ------------------------------------------------------------------------------------------ fin

@pytest.mark.parametrize("answer, prediction, credit", [
    ("Yes", "Yes.", 1.0), ("yes", "Y es", 1.0), ("A", "a", 1.0), ("A", "A. 12%", 0.0),
    ("A", "Answer: A", 0.0), ("yes ", "yes", 0.0),   # the GT is lower-cased only, never stripped
])
def test_fin_rule(answer, prediction, credit):
    assert judge("fin", answer, prediction) == credit


# ------------------------------------------------------------------------------------------ ocr

def test_ocr_rules_per_answer_type():
    regular = {"answer_type": "Regular Text Recognition"}
    assert judge("ocr", ["STOP", "halt"], "The sign says\nstop.", **regular) == 1.0
    assert judge("ocr", "Hello World", "hello\nworld", **regular) == 0.0       # newline removed, no space added
    assert judge("ocr", "Hello World", "hello world!", **regular) == 1.0
    hme = {"answer_type": "Handwritten Mathematical Expression Recognition"}
    assert judge("ocr", "\\frac{a}{b}", " \\frac { a }\n{ b } ", **hme) == 1.0  # spaces and newlines removed
    assert judge("ocr", "X^2", "x^2", **hme) == 0.0                            # case kept
    with pytest.raises(UserError, match="OCRBench category"):
        judge("ocr", "a", "a", answer_type="Poetry")


def test_ocr_final_score_fields():
    rows = {i: {"question_id": i, "answer": "a", "answer_type": t} for i, t in enumerate(
        ["Regular Text Recognition", "Digit String Recognition", "Doc-oriented VQA",
         "Handwritten Mathematical Expression Recognition", "Key Information Extraction"])}
    result = get_scorer("ocr").score(rows, {0: "a", 1: "a", 2: "a", 3: "A", 4: "b"})
    assert result["final_score"] == 3 and result["final_score_norm"] == 0.3
    assert result["accuracy"] == 0.3                     # hits / 10, a percentage only for 1000 items
    assert result["hit_rate"] == 60.0
    assert result["groups"]["Text Recognition"] == 2 and result["groups"]["Doc-oriented VQA"] == 1


# ------------------------------------------------------------------------------------------- vp

def test_vp_normalisation_and_count_accuracy():
    assert judge("vp", "(B)", "(b).", task="Depth") == 1.0
    assert judge("vp", "3", "There are\n3.", task="Count") == 1.0
    assert judge("vp", "(A) 2", "(a)2", task="Count") == 1.0          # spaces removed on both sides
    rows = {0: {"question_id": 0, "answer": "2", "task": "Count"},
            1: {"question_id": 1, "answer": "3", "task": "Count"},
            2: {"question_id": 2, "answer": "(A)", "task": "Relation"}}
    result = get_scorer("vp").score(rows, {0: "2", 1: "4", 2: "(A)"})
    assert result["accuracy"] == 66.67 and result["count_accuracy"] == 50.0 and result["n_count"] == 2
    assert get_scorer("vp").score({2: rows[2]}, {2: "(A)"})["count_accuracy"] is None


# ------------------------------------------------------------------------------------------ app

def test_app_letters_and_missing_answers():
    assert judge("app", "B", " b\n") == 1.0
    assert judge("app", "B", "(B)") == 0.0       # the official pipeline sends the raw stripped text
    with_answers = {"ALL_1": {"question_id": "ALL_1", "answer": "A"}, "ALL_2": {"question_id": "ALL_2", "answer": "C"}}
    assert get_scorer("app").score(with_answers, {"ALL_1": "A", "ALL_2": "B"})["accuracy"] == 50.0
    without = {"ALL_1": {"question_id": "ALL_1"}}
    result = get_scorer("app").score(without, {"ALL_1": "A"})
    assert result["accuracy"] is None and result["n"] == 1 and result["n_scored"] == 0


def test_mmt_submission_file(tmp_path):
    questions = {"ALL_10": {"question_id": "ALL_10"}, "ALL_2": {"question_id": "ALL_2"}}
    out = tmp_path / "sub.tsv"
    assert write_mmt_submission(out, questions, [{"question_id": "ALL_10", "text": " c\n"}]) == 2
    with open(out, newline="") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    # sorted by index; the option is the stripped, upper-cased text; no prediction -> "0" / "Z"
    assert rows == [["index", "question_id", "prediction", "opt"], ["2", "ALL_2", "0", "Z"],
                    ["10", "ALL_10", " c\n", "C"]]
    with pytest.raises(UserError, match="ALL_<index>"):
        write_mmt_submission(out, {"x1": {}}, [])


# ------------------------------------------------------------------------------------------- files

def test_prediction_file_errors_name_file_and_line(tmp_path):
    path = tmp_path / "preds.jsonl"
    path.write_text('{"question_id": 1, "text": "a"}\n\n{"question_id": 2, "text": \n')
    with pytest.raises(UserError, match=r"preds.jsonl:3: not valid JSON"):
        load_predictions(path)
    path.write_text('{"question_id": 1}\n')
    with pytest.raises(UserError, match=r"preds.jsonl:1: missing key 'text'"):
        load_predictions(path)
    path.write_text('{"question_id": 7, "text": "a"}\n')
    with pytest.raises(UserError, match=r"preds.jsonl:1: question_id 7 is not among the questions"):
        load_predictions(path, {1: {}})


@pytest.fixture
def med_files(tmp_path):
    questions = tmp_path / "test.json"
    questions.write_text(json.dumps([{"question_id": "q1", "answer": "yes", "text": "Is it?"},
                                     {"question_id": "q2", "answer": "no", "text": "Is it?"}]))
    predictions = tmp_path / "merge.jsonl"
    predictions.write_text('{"question_id": "q1", "text": "Yes"}\n{"question_id": "q2", "text": "yes"}\n')
    return questions, predictions


def test_cli_score_prints_one_json_object(med_files, capsys):
    questions, predictions = med_files
    assert main(["score", "--task", "med", "--questions", str(questions), "--predictions", str(predictions)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["accuracy"] == 50.0 and summary["n"] == 2 and "credits" not in summary


def test_cli_score_unknown_question_id_exits_2(med_files, capsys):
    questions, predictions = med_files
    predictions.write_text('{"question_id": "q1", "text": "Yes"}\n{"question_id": "zz9", "text": "no"}\n')
    assert main(["score", "--task", "med", "--questions", str(questions), "--predictions", str(predictions)]) == 2
    err = capsys.readouterr().err
    assert "zz9" in err and "merge.jsonl:2" in err


def test_cli_score_rejects_unknown_task_and_misplaced_options(med_files, capsys):
    questions, predictions = med_files
    base = ["score", "--questions", str(questions), "--predictions", str(predictions)]
    assert main(base + ["--task", "chess"]) == 2
    assert "unknown task 'chess'; tasks: RS, Med, AD, Sci, Fin, OCR, Math, VP, APP" in capsys.readouterr().err
    assert main(base + ["--task", "med", "--submission", "x.tsv"]) == 2
    assert main(base + ["--task", "med", "--judge-url", "http://localhost:1"]) == 2


def test_ls_lists_scorers(capsys):
    assert main(["ls"]) == 0
    out = capsys.readouterr().out
    assert "scorers:" in out and "math" in out and "ocr" in out
