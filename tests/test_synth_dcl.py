"""The five synthetic domain (DCL) tasks: deterministic per seed, drawn fast at any size, every question family
present with balanced answers from small closed sets, the fields their official scorers read, and prompts
that fit the tiny model's context. No model is loaded."""
from __future__ import annotations

import collections
import importlib
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mllmcl.data.synth import item_rng, synth_task
from mllmcl.data.synth.rows import image_name, question_row
from mllmcl.data.tasks import builtin_spec
from mllmcl.eval.scorers import SCORERS

DCL = ("RS", "Med", "AD", "Sci", "Fin")
N = 240


def _module(task: str):
    return importlib.import_module(synth_task(task).draw.__module__)


def _draw(task: str, index: int, split: str = "train", size: int = 48, seed: int = 0):
    return synth_task(task).draw(item_rng(seed, task, split, index), split, size)


def _items(task: str, split: str = "train", n: int = N):
    return [_draw(task, i, split) for i in range(n)]


@pytest.mark.parametrize("task", DCL)
def test_registered_as_iid_dcl_and_documented(task):
    t = synth_task(task)
    assert t.setting == "dcl" and t.shift == ""
    doc = _module(task).__doc__
    assert "imitating" in doc and "families" in doc.lower() and "learnab" in doc.lower()


@pytest.mark.parametrize("task", DCL)
def test_deterministic_per_seed_and_index(task):
    for split in ("train", "test"):
        a, b = _draw(task, 5, split, seed=3), _draw(task, 5, split, seed=3)
        assert a.image.tobytes() == b.image.tobytes()
        assert (a.question, a.answer, dict(a.extra), a.source) == (b.question, b.answer, dict(b.extra), b.source)
        assert a.image.tobytes() != _draw(task, 5, split, seed=4).image.tobytes()


@pytest.mark.parametrize("task", DCL)
def test_requested_size_and_a_larger_size_is_the_same_scene(task):
    for i in range(6):
        small, large = _draw(task, i, size=48), _draw(task, i, size=96)
        assert small.image.size == (48, 48) and small.image.mode == "RGB" and large.image.size == (96, 96)
        assert (small.question, small.answer) == (large.question, large.answer)
        shrunk = np.asarray(large.image.resize((48, 48), Image.LANCZOS), dtype=float)
        assert np.abs(shrunk - np.asarray(small.image, dtype=float)).mean() < 12  # only texture grain differs


@pytest.mark.parametrize("task", DCL)
def test_items_differ_across_indices_and_splits(task):
    train, test = _items(task, "train", 60), _items(task, "test", 60)
    assert len({it.image.tobytes() for it in train}) == 60
    assert all(a.image.tobytes() != b.image.tobytes() for a, b in zip(train, test))


@pytest.mark.parametrize("task", DCL)
def test_fast_enough(task):
    start = time.perf_counter()
    for i in range(100):
        _draw(task, i)
    assert (time.perf_counter() - start) / 100 < 0.01  # 0.3-2.5 ms on a free core; slack for shared CI


@pytest.mark.parametrize("task", DCL)
def test_every_family_appears_with_balanced_answers(task):
    families = _module(task).FAMILIES
    by_family = collections.defaultdict(collections.Counter)
    for it in _items(task):
        by_family[it.extra["question_type"]][it.answer] += 1
    assert set(by_family) == set(families)
    for family, answers in by_family.items():
        n = sum(answers.values())
        assert len(answers) >= 2 and n >= 20, (family, answers)
        if any("," in a for a in answers):  # list answers (MapQA "Which states…"): many combinations, not uniform
            assert max(answers.values()) / n <= 0.35, (family, answers)
        else:
            assert max(answers.values()) / n <= 1 / len(answers) + 0.15, (family, answers)
    overall = collections.Counter(it.answer.lower() for it in _items(task))
    assert overall.most_common(1)[0][1] / N <= 0.5  # always giving one answer cannot beat 50 %


@pytest.mark.parametrize("task", DCL)
def test_reference_answers_score_full_marks_with_the_official_scorer(task):
    scorer, spec = SCORERS.build(task.lower()), builtin_spec(task)
    items = _items(task, "test", 80)
    for i, it in enumerate(items):
        row = question_row(it, task, i, image_name(it, "test", i))
        row["text"] = spec.prompt(it.question, it.answer)
        assert scorer.judge(row, it.answer) == 1.0, row


@pytest.mark.parametrize("task", DCL)
def test_prompts_fit_the_tiny_context(task):
    """36 image tokens + `USER: <image>\\n{question} ASSISTANT: {answer}</s>` within the 160-token limit."""
    from tokenizers import Tokenizer

    import mllmcl.models.tiny as tiny

    tokenizer = Tokenizer.from_file(str(Path(tiny.WEIGHTS_DIR) / "tokenizer.json"))
    spec = builtin_spec(task)
    longest = max(len(tokenizer.encode(f"USER: {spec.prompt(it.question, it.answer)} ASSISTANT: {it.answer}").ids)
                  for it in _items(task, "train", 60))
    assert longest + 36 + 4 <= 160


def test_rs_med_ad_answers_are_short_closed_phrases():
    rs, ad = _module("RS"), _module("AD")
    assert {it.answer for it in _items("RS")} == {"Yes", "No", "rural", "urban", *rs.COUNTS}
    med = _items("Med")
    assert all(len(it.answer.split()) <= 3 for it in med)  # scored case-insensitively as a substring
    ad_items = _items("AD")
    assert {it.answer for it in ad_items if it.extra["question_type"] == "planning"} == set(ad.ACTIONS.values())
    assert {it.answer for it in ad_items if it.extra["question_type"] == "signal"} == {"red", "yellow", "green"}


def test_sci_sources_choices_and_mapqa_lists():
    sci = _module("Sci")
    sources = collections.Counter()
    for it in _items("Sci", "test"):
        sources[it.source] += 1
        if it.source in ("AI2D", "TQA"):  # exact-match letter items (the instruction is added on writing)
            choices = it.extra["choices"]
            assert it.question.endswith(f"\n{'ABCD'[len(choices) - 1]}. {choices[-1]}") and it.answer in "ABCD"[: len(choices)]
            assert f"{it.answer}. {choices['ABCD'.index(it.answer)]}" in it.question
        else:
            assert it.source == "MapQA" and "choices" not in it.extra
            if it.question.startswith("Which states"):  # partial credit over the comma-split list
                assert set(it.answer.split(", ")) <= set(sci.STATES)
            else:
                assert it.answer in ("Yes", "No")
    assert set(sources) == {"AI2D", "TQA", "MapQA"}


def test_fin_answers_and_the_official_suffix():
    spec = builtin_spec("Fin")
    for it in _items("Fin", "test"):
        assert "directly" not in it.question  # the prompt rule adds the suffix; the drawer must not
        asked = spec.prompt(it.question, it.answer)
        if it.answer in ("Yes", "No"):
            assert asked.endswith("Only answer with yes or no directly.")
        else:
            assert it.answer in "ABC" and asked.endswith("Answer with the given letter directly, e.g., A, B, C, D.")
            assert f"\n{it.answer}. {it.extra['choices']['ABC'.index(it.answer)]}" in it.question


def test_domains_are_not_told_apart_by_mean_colour_alone():
    """A nearest-centroid classifier on each image's mean RGB must stay far from perfect: the domains differ
    in layout and texture, their palettes overlap."""
    feats = {t: np.array([np.asarray(it.image, dtype=float).mean(axis=(0, 1)) for it in _items(t, "train", 100)])
             for t in DCL}
    centroids = {t: f.mean(axis=0) for t, f in feats.items()}
    hits = sum(min(centroids, key=lambda c: np.linalg.norm(x - centroids[c])) == t for t, f in feats.items() for x in f)
    assert hits / (100 * len(DCL)) < 0.7
