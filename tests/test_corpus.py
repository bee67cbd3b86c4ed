"""Tests for the general synthetic pretraining corpus (mllmcl.pretrain.corpus)."""
from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest

from mllmcl.data.records import Example
from mllmcl.pretrain import corpus
from mllmcl.pretrain.corpus import (FAMILIES, VOCABULARY, generate_corpus, generate_labelled, generate_records,
                                    tokenizer_texts)

OPTION = re.compile(r"^([A-J])\. (.+)$")


@pytest.fixture(scope="module")
def records() -> list[corpus.Record]:
    return generate_records(500, seed=11, image_size=32)


def _same(a: list[Example], b: list[Example]) -> bool:
    return len(a) == len(b) and all(
        x.question == y.question and x.answer == y.answer and np.array_equal(np.asarray(x.image), np.asarray(y.image))
        for x, y in zip(a, b))


def _count_truth(question: str, scene: corpus.Scene) -> str | None:
    """The count a count question asks for, from the scene record (None if not a count question)."""
    objs = scene.objects
    if question in corpus.COUNT_ALL_Q:
        return str(len(objs))
    for shape, plural in corpus.PLURALS.items():
        if question in {t.format(plural=plural) for t in corpus.COUNT_SHAPE_Q}:
            return str(sum(o.shape == shape for o in objs))
    for color in corpus.COLORS:
        if question in {t.format(color=color) for t in corpus.COUNT_COLOR_Q}:
            return str(sum(o.color == color for o in objs))
    return None


def _choice_truth(stem: str, scene: corpus.Scene) -> str:
    """Ground truth for a choice stem, recomputed from the scene."""
    count = _count_truth(stem, scene)
    if count is not None:
        return count
    for shape in corpus.SHAPES:
        if stem in {t.format(shape=shape) for t in corpus.COLOR_Q}:
            (obj,) = [o for o in scene.objects if o.shape == shape]
            return obj.color
    for color in corpus.COLORS:
        if stem in {t.format(color=color) for t in corpus.SHAPE_Q}:
            (obj,) = [o for o in scene.objects if o.color == color]
            return obj.shape
    raise AssertionError(f"unrecognised choice stem {stem!r}")


def test_deterministic_and_seed_dependent() -> None:
    a, b = generate_corpus(40, seed=7), generate_corpus(40, seed=7)
    assert _same(a, b)
    c = generate_corpus(40, seed=8)
    assert not _same(a, c)


def test_prefix_property() -> None:
    assert _same(generate_corpus(30, seed=3, image_size=48), generate_corpus(45, seed=3, image_size=48)[:30])


@pytest.mark.parametrize("size", [32, 48, 64])
def test_image_size_and_mode(size: int) -> None:
    for ex in generate_corpus(12, seed=1, image_size=size):
        assert isinstance(ex, Example)
        assert ex.image.mode == "RGB" and ex.image.size == (size, size)


def test_families_all_present_and_roughly_balanced(records: list[corpus.Record]) -> None:
    counts = Counter(r.family for r in records)
    assert set(counts) == set(FAMILIES)
    assert all(25 <= n <= 80 for n in counts.values()), counts
    assert [f for f, _ in generate_labelled(20, seed=11, image_size=32)] == [r.family for r in records[:20]]


def test_family_subset() -> None:
    assert {f for f, _ in generate_labelled(30, seed=2, image_size=32, families=["copy", "color"])} == {"copy", "color"}
    with pytest.raises(ValueError):
        generate_corpus(1, seed=0, families=["ocr"])


def test_text_hygiene(records: list[corpus.Record]) -> None:
    for r in records:
        q, a = r.example.question, r.example.answer
        assert q == q.strip() and a == a.strip() and q and a
        assert len(q.split()) <= 25, q
        assert "USER:" not in q and "ASSISTANT:" not in q
        assert 1 <= len(r.scene.objects) <= 5


def test_exists_is_balanced() -> None:
    answers = Counter(ex.answer for ex in generate_corpus(400, seed=5, image_size=32, families=["exists"]))
    assert set(answers) == {"yes", "no"}
    assert 0.4 <= answers["yes"] / 400 <= 0.6, answers


def test_choice_letters_index_the_true_option() -> None:
    recs = generate_records(300, seed=4, image_size=32, families=["choice"])
    letters = Counter()
    for r in recs:
        lines = r.example.question.split("\n")
        options = dict(OPTION.match(line).groups() for line in lines[1:-1])
        assert 3 <= len(options) <= 5 and "".join(options) == corpus.LETTERS[:len(options)]
        assert r.example.answer in options
        assert options[r.example.answer] == _choice_truth(lines[0], r.scene)
        assert len(set(options.values())) == len(options)
        letters[r.example.answer] += 1
    assert {"A", "B", "C", "D", "E"} <= set(letters)


def test_count_answers_match_the_scene() -> None:
    recs = generate_records(200, seed=9, image_size=32, families=["count"])
    for r in recs:
        assert r.example.answer == _count_truth(r.example.question, r.scene), r.example.question
    assert len({r.example.answer for r in recs}) >= 4  # 0 up to 3 occur


def test_other_answers_match_the_scene(records: list[corpus.Record]) -> None:
    for r in records:
        q, a, objs = r.example.question, r.example.answer, r.scene.objects
        if r.family == "background":
            assert a == r.scene.background and r.scene.texture == "plain"
        elif r.family == "caption":
            assert a == corpus.caption_of(objs) and len(objs) <= 3
        elif r.family == "size":
            (obj,) = [o for o in objs if o.name in q]
            assert a == obj.size
        elif r.family == "exists":
            assert (a == "yes") == any(f" {o.name} " in q or q.endswith(f" {o.name}?") for o in objs)
        elif r.family == "copy":
            assert q.rstrip(".").endswith(a)


def test_drawn_objects_match_the_record() -> None:
    """The pixel at each object's centre has the object's colour, so the scene record is what was drawn."""
    for r in generate_records(60, seed=6, image_size=64):
        pixels = np.asarray(r.example.image).astype(int)
        for o in r.scene.objects:
            y, x = min(63, int(o.y * 64)), min(63, int(o.x * 64))
            assert np.abs(pixels[y, x] - np.array(o.rgb)).max() <= 40, (o, pixels[y, x])


def test_scene_views_are_deterministic_and_their_object_map_matches_the_pixels() -> None:
    views = corpus.generate_scene_views(40, seed=2, image_size=48)
    again = corpus.generate_scene_views(50, seed=2, image_size=48)[:40]
    assert all(np.array_equal(np.asarray(a.image), np.asarray(b.image)) and np.array_equal(a.object_map, b.object_map)
               for a, b in zip(views, again))
    assert {len(v.scene.objects) for v in views} == {1, 2}
    for v in views:
        pixels = np.asarray(v.image).astype(int)
        for k, o in enumerate(v.scene.objects, start=1):
            y, x = min(47, int(o.y * 48)), min(47, int(o.x * 48))
            assert v.object_map[y, x] == k  # the map marks each object where it is drawn
            assert np.abs(pixels[y, x] - np.array(o.rgb)).max() <= 40
        assert (v.object_map == 0).mean() > 0.4  # and most of the image is background


def test_vocabulary() -> None:
    assert list(VOCABULARY) == sorted(set(VOCABULARY)) and len(VOCABULARY) >= 600
    for word in ("yes", "no", "A", "J", "residential", "lymphocyte", "pedestrian", "candlestick", "sum", "button",
                 "twenty", "20", "the", "image"):
        assert word in VOCABULARY, word
    assert all(w == w.strip() and " " not in w for w in VOCABULARY)


def test_tokenizer_texts_cover_answers_and_vocabulary(records: list[corpus.Record]) -> None:
    texts = tokenizer_texts()
    as_set = set(texts)
    words = {w for t in texts for w in t.split()}
    assert {"USER:", "ASSISTANT:"} <= as_set
    assert set(VOCABULARY) <= as_set
    for r in records:
        if r.family not in ("caption", "copy"):
            assert r.example.answer in as_set, r.example.answer
        assert set(r.example.answer.split()) <= words, r.example.answer
        if r.family not in ("choice", "copy", "position"):
            assert r.example.question in as_set, r.example.question
    assert 1000 <= len(texts) <= 20000


def test_instruction_corpus_binds_each_answer_format_to_its_instruction() -> None:
    from mllmcl.data.answer_formats import INSTRUCTION_FORMATS, fits, instruction_of

    recs = generate_records(600, seed=3, image_size=32, instructions=True)
    assert {r.format for r in recs} == set(corpus.FORMATS)
    assert {r.family for r in recs} == set(corpus.INSTRUCTION_WEIGHTS)
    asked = Counter()
    for r in recs:
        instruction = instruction_of(r.example.question)
        if r.format == "free":
            assert instruction == "", r.example.question
            continue
        fmt = "text" if r.format == "word" else r.format
        assert fits(r.example.answer, fmt), (r.example.question, r.example.answer)
        if instruction:  # a few words and numbers are asked bare
            asked[r.format, INSTRUCTION_FORMATS[instruction]] += 1
            assert INSTRUCTION_FORMATS[instruction] in (r.format, "short"), r.example.question
        else:
            assert r.format in ("word", "number") or r.example.question.endswith(corpus.CHOICE_INSTRUCTIONS[1:])
    # every closed format is asked under each instruction that admits it, letters under both letter wordings
    assert {("yesno", "yesno"), ("yesno", "short"), ("word", "short"), ("number", "short"), ("letter", "letter")} <= set(asked)
    letters = [r.example.question for r in recs if r.format == "letter"]
    assert any(q.endswith(corpus.FIN_LETTER) for q in letters) and any(q.endswith(corpus.LETTER_INSTRUCTION) for q in letters)


def test_instruction_corpus_is_deterministic_a_prefix_and_apart_from_the_general_one() -> None:
    a = generate_corpus(30, seed=2, image_size=32, instructions=True)
    assert _same(a, generate_corpus(40, seed=2, image_size=32, instructions=True)[:30])
    general = generate_corpus(30, seed=2, image_size=32)
    assert [e.question for e in a] != [e.question for e in general]
    assert not any(e.question.endswith(corpus.SHORT_INSTRUCTION) for e in general)  # the general corpus is bare


def test_verify_answers_check_the_scene() -> None:
    for r in generate_records(150, seed=8, image_size=32, families=["verify"], instructions=True):
        q, objs = r.example.question, r.scene.objects
        truth = {"yes": True, "no": False}[r.example.answer]
        if "background" in q:
            assert (f" {r.scene.background}?" in q.split("\n")[0] or f" {r.scene.background} " in q) == truth
        elif "objects" in q:
            assert (f" {len(objs)} objects" in q) == truth
