"""Files behind `mllmcl score`: the official test.json, a predictions .jsonl, the MMT-Bench submission.

Every problem a user can cause is a UserError naming the file, the line and the key.
"""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from mllmcl.core.errors import UserError
from mllmcl.core.io import json_lines, read_json, write_text_atomic
from mllmcl.eval import get_scorer, scorer_name
from mllmcl.eval.judge import OpenAIExtractor

PER_ITEM_KEYS = ("credits", "extracted")  # left out of the one-object summary the CLI prints


def _key(value: Any) -> bool:
    """A question_id can key a table: a string, a number or a bool (not a list, an object or null)."""
    return isinstance(value, (str, int, float)) and value == value  # NaN never equals itself: no key


def load_questions(path: str | Path) -> dict[Any, dict]:
    """The official test file (a JSON list of objects with a `question_id`), keyed by question_id."""
    path = Path(path)
    rows = read_json(path, "questions file")
    if not isinstance(rows, list):
        raise UserError(f"{path}: expected a JSON list of questions, got {type(rows).__name__}")
    by_id: dict[Any, dict] = {}
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or "question_id" not in row:
            raise UserError(f"{path}: item {i} has no 'question_id'")
        if not _key(row["question_id"]):
            raise UserError(f"{path}: item {i}: 'question_id' must be a string or a number, got {row['question_id']!r}")
        if row["question_id"] in by_id:
            raise UserError(f"{path}: question_id {row['question_id']!r} occurs twice")
        by_id[row["question_id"]] = row
    return by_id


def load_predictions(path: str | Path, questions: Mapping[Any, Any] | None = None) -> list[dict]:
    """Prediction lines `{"question_id", "text", ...}` (the official merge.jsonl); blank lines are skipped.

    With `questions`, a question_id that is not among them is an error naming file and line.
    """
    path = Path(path)
    try:
        lines = path.read_bytes().split(b"\n")
    except FileNotFoundError:
        raise UserError(f"{path}: no such predictions file") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a folder, expected a predictions .jsonl file") from None
    except (OSError, ValueError) as err:
        raise UserError(f"{path}: cannot read the predictions file ({getattr(err, 'strerror', None) or err})") from None
    predictions, seen = [], set()
    for where, item in json_lines(lines, path):
        for key in ("question_id", "text"):
            if key not in item:
                raise UserError(f"{where}: missing key {key!r}")
        if not isinstance(item["text"], str):
            raise UserError(f"{where}: 'text' must be a string")
        qid = item["question_id"]
        if not _key(qid):
            raise UserError(f"{where}: 'question_id' must be a string or a number, got {qid!r}")
        if questions is not None and qid not in questions:
            raise UserError(f"{where}: question_id {qid!r} is not among the questions")
        if qid in seen:
            raise UserError(f"{where}: question_id {qid!r} has a prediction already")
        seen.add(qid)
        predictions.append(item)
    if not predictions:
        raise UserError(f"{path}: no predictions")
    return predictions


def mmt_index(question_id: Any) -> int:
    """The MMT-Bench row index of an APP question_id (`ALL_123` -> 123, as the official converter reads it)."""
    try:
        return int(str(question_id).replace("ALL_", ""))
    except ValueError:
        raise UserError(f"question_id {question_id!r} is not of the form ALL_<index> of MMT-Bench") from None


def write_mmt_submission(path: str | Path, questions: Mapping[Any, Any], predictions: Sequence[Mapping]) -> int:
    """Write the MMT-Bench (GUI subset) submission: a TSV with `index`, `question_id`, `prediction`, `opt`.

    As in the official converter, the chosen option `opt` is the prediction stripped and upper-cased
    (no letter extraction), and a question without a prediction gets prediction `0` and option `Z`.
    The official converter fills these columns into VLMEvalKit's full MMT-Bench_ALL submission table (which
    also carries the question, options and category columns); merge on `index` if the server wants that.
    Rows are sorted by index. Returns the number of rows written.
    """
    texts = {p["question_id"]: p["text"] for p in predictions}
    rows = sorted((mmt_index(qid), qid) for qid in questions)
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter="\t", lineterminator="\n")
    writer.writerow(["index", "question_id", "prediction", "opt"])
    for index, qid in rows:
        if qid in texts:
            writer.writerow([index, qid, texts[qid], texts[qid].strip().upper()])
        else:
            writer.writerow([index, qid, "0", "Z"])
    write_text_atomic(path, buffer.getvalue())
    return len(rows)


def score_files(task: str, questions_path: str | Path, predictions_path: str | Path, *,
                submission: str | Path | None = None, judge_url: str | None = None,
                judge_model: str = "gpt-4o-mini", judge_key_env: str = "OPENAI_API_KEY") -> dict:
    """Score a predictions file against the official test file; returns the summary (no per-item keys)."""
    task = scorer_name(task)  # `RS`, `rs`: any case
    if submission is not None and task != "app":
        raise UserError("--submission writes the MMT-Bench file and applies only to --task APP")
    options = {}
    if judge_url:
        if task != "math":
            raise UserError("--judge-url applies only to --task Math")
        options["extractor"] = OpenAIExtractor(judge_url, judge_model, os.environ.get(judge_key_env))
    scorer = get_scorer(task, **options)
    questions = load_questions(questions_path)
    predictions = load_predictions(predictions_path, questions)
    try:
        result = scorer.score(questions, predictions)
        if submission is not None:
            result["submission"] = str(submission)
            result["submission_rows"] = write_mmt_submission(submission, questions, predictions)
    except UserError as err:
        raise UserError(f"{questions_path}: {err}") from None
    return {k: v for k, v in result.items() if k not in PER_ITEM_KEYS}
