"""The synthetic benchmark's overlap knobs and held-out domain: shared question formats whose asked text is
identical in every domain (a question-only router falls to chance at overlap 1), one rule per template and
domain, the transfer (RS → Sci) and conflict (Sci → Fin) pairs, backdrops from the shared pool, the
unseen domain written and loaded apart from the tasks, and the knobs' validation. No model is loaded."""
from __future__ import annotations

import collections
import json

import numpy as np
import pytest

from mllmcl.cli import main
from mllmcl.data import load_benchmark
from mllmcl.data.check import check_benchmark
from mllmcl.data.synth import fin, synth_task
from mllmcl.data.synth.draw import LAND_COVER, SHARED_BACKDROPS, Look
from mllmcl.data.synth.shared import ASKED, FAMILIES, answer_format, draw_item
from mllmcl.data.synth.write import SynthSpec, write_synth
from mllmcl.data.tasks import builtin_spec
from mllmcl.errors import UserError

DCL = ("RS", "Med", "AD", "Sci", "Fin")
DOMAINS = (*DCL, "Unseen")


def _asked(task: str, item) -> str:
    """The question as the model is asked it: after the task's prompt rule (Fin's suffix)."""
    return item.question if task == "Unseen" else builtin_spec(task).prompt(item.question, item.answer)


def _items(task: str, n: int, overlap: float = 1.0, visual_overlap: float = 0.0, split: str = "train", seed: int = 0):
    return [draw_item(synth_task(task), seed, split, i, 48, overlap, visual_overlap) for i in range(n)]


def _family(task: str, family: str, n: int, split: str = "train"):
    out, i = [], 0
    while len(out) < n:
        item = draw_item(synth_task(task), 0, split, i, 48, 1.0)
        out += [item] if item.extra["family"] == family else []
        i += 1
    return out


@pytest.mark.parametrize("task", DOMAINS)
def test_knobs_are_deterministic_per_seed_and_leave_other_items_as_they_were(task):
    for split in ("train", "val", "test"):
        a = draw_item(synth_task(task), 3, split, 7, 48, 0.5, 0.5)
        b = draw_item(synth_task(task), 3, split, 7, 48, 0.5, 0.5)
        assert a.image.tobytes() == b.image.tobytes() and (a.question, a.answer, a.extra) == (b.question, b.answer, b.extra)
    assert _items(task, 6, 0.5, 0.5, seed=1)[0].image.tobytes() != _items(task, 6, 0.5, 0.5)[0].image.tobytes()
    # an item that is neither shared-format nor shared-look at p is the item drawn at 0, and raising p only
    # turns more items shared: the knobs never redraw the rest
    plain, half, most = _items(task, 40, 0.0), _items(task, 40, 0.5, 0.0), _items(task, 40, 0.9, 0.0)
    for p, q, r in zip(plain, half, most):
        if q.extra["format"] == "own":
            assert q.image.tobytes() == p.image.tobytes() and (q.question, q.answer) == (p.question, p.answer)
            assert q.extra == {**p.extra, "format": "own", "answer_format": answer_format(p.answer)}
        else:
            assert r.extra["format"] == "shared" and r.image.tobytes() == q.image.tobytes()
    assert 8 <= sum(q.extra["format"] == "shared" for q in half) <= 32


def test_at_overlap_1_the_question_says_nothing_about_the_task():
    n = 160
    asked = {t: collections.Counter(_asked(t, it) for it in _items(t, n)) for t in DOMAINS}
    assert all(set(counts) == set(ASKED.values()) for counts in asked.values())  # one support, every domain
    for task, counts in asked.items():
        assert all(abs(c / n - 1 / len(FAMILIES)) < 0.12 for c in counts.values()), (task, counts)
    # the best router that reads only the question picks, per question, the task that asks it most
    best = sum(max(asked[t][q] for t in DCL) for q in ASKED.values()) / (n * len(DCL))
    assert best < 1 / len(DCL) + 0.08
    fin_item = next(it for it in _items("Fin", 4) if it.extra["family"] == "yesno")
    assert not fin_item.question.endswith("directly.")  # Fin's rule adds the suffix, once


@pytest.mark.parametrize("task", DOMAINS)
def test_shared_items_are_labelled_balanced_and_fit_the_tiny_context(task):
    from pathlib import Path

    from tokenizers import Tokenizer

    import mllmcl.models.tiny as tiny

    answers = collections.defaultdict(collections.Counter)
    for it in _items(task, 240):
        family = it.extra["family"]
        assert it.extra["format"] == "shared" and it.extra["question_type"] == f"shared_{family}"
        assert it.extra["answer_format"] == family == answer_format(it.answer)
        answers[family][it.answer] += 1
    assert set(answers["yesno"]) == {"Yes", "No"} and set(answers["letter"]) == set("ABCD")
    for counts in answers.values():
        assert max(counts.values()) / sum(counts.values()) <= 1 / len(counts) + 0.15, counts
    tokenizer = Tokenizer.from_file(str(Path(tiny.WEIGHTS_DIR) / "tokenizer.json"))
    longest = max(len(tokenizer.encode(f"USER: {q} ASSISTANT: A").ids) for q in ASKED.values())
    assert longest + 36 + 4 <= 160


@pytest.mark.parametrize("task", DCL)
def test_shared_reference_answers_score_full_marks_with_the_official_scorer(task, tmp_path):
    from mllmcl.data.synth.rows import image_name, question_row
    from mllmcl.eval.scorers import SCORERS

    scorer = SCORERS.build(task.lower())
    for i, it in enumerate(_items(task, 30, split="test")):
        row = question_row(it, task, i, image_name(it, "test", i))
        assert scorer.judge(row, it.answer) == 1.0, row
        if task == "Sci":  # exact-match sources, so a letter is not found inside a longer answer
            assert row["image"].split("/")[-1].split("_")[0] in ("AI2D", "TQA")


def _shares(item, palettes, near: float = 40.0) -> np.ndarray:
    """The share of the image's pixels within `near` of each palette."""
    pixels = np.asarray(item.image, dtype=float).reshape(-1, 1, 3)
    return np.array([(np.linalg.norm(pixels - np.array(p, dtype=float), axis=2).min(axis=1) < near).mean()
                     for p in palettes])


def _centroid_accuracy(train, test, palettes) -> float:
    """Fit nearest-centroid on `train`'s colour shares, score it on `test`: does A's rule answer B?"""
    feats = {a: np.mean([_shares(it, palettes) for it in train if it.answer == a], axis=0)
             for a in {it.answer for it in train}}
    return float(np.mean([min(feats, key=lambda a: np.linalg.norm(_shares(it, palettes) - feats[a])) == it.answer
                          for it in test]))


def test_rs_to_sci_is_a_transfer_pair_and_sci_to_fin_a_conflict_pair():
    """Pixel-level check of the design (not a model): a colour-share classifier fit on RS's letter items
    answers Sci's letter items far above chance (same cue, same answer), and one fit on Fin's yes/no items
    answers Sci's yes/no items far below chance (same cue, opposite answer)."""
    covers = list(LAND_COVER.values())
    assert _centroid_accuracy(_family("RS", "letter", 60), _family("Sci", "letter", 60, "test"), covers) > 0.45
    moves = [fin.UP, fin.DOWN]
    fin_items = _family("Fin", "yesno", 60)
    assert _centroid_accuracy(fin_items, _family("Fin", "yesno", 40, "test"), moves) > 0.85
    assert _centroid_accuracy(fin_items, _family("Sci", "yesno", 40, "test"), moves) < 0.25


@pytest.mark.parametrize("task", DOMAINS)
def test_visual_overlap_takes_backdrops_from_the_shared_pool(task, monkeypatch):
    picks = []
    real = Look.pick

    def spy(self, rng, own, kind, amount=15):
        colour = real(self, rng, own, kind, amount)
        picks[-1].append((self.shared, kind, colour))
        return colour

    monkeypatch.setattr(Look, "pick", spy)
    for overlap, visual in ((0.0, 1.0), (1.0, 1.0), (0.0, 0.0), (1.0, 0.0)):
        for i in range(12):
            picks.append([])
            item = draw_item(synth_task(task), 0, "train", i, 48, overlap, visual)
            assert picks[-1], "every domain drawer picks its backdrop through Look.pick"
            stain = task == "Med" and item.extra.get("question_type") == "stain"  # the stroma is the answer
            for shared, kind, colour in picks[-1]:
                assert shared == (visual == 1.0 and not stain)
                if shared:
                    assert min(max(abs(a - b) for a, b in zip(colour, c)) for c in SHARED_BACKDROPS[kind]) <= 15


def test_unseen_domain_is_written_loaded_and_never_a_task(tmp_path):
    root = write_synth(tmp_path / "d", SynthSpec(train=3, test=2, val=2, unseen=6, overlap=0.5, router_k=1,
                                                 replay_k=1), progress=False)
    manifest = json.loads((root / "mllmcl.json").read_text())
    assert manifest["unseen"] == "unseen/test.json" and "Unseen" not in [t["name"] for t in manifest["tasks"]]
    bench = load_benchmark(root)
    assert bench.names == list(DCL) and bench.unseen_file == root / "unseen" / "test.json"
    assert [s.id for s in bench.unseen] == [f"Unseen_test_{i:05d}" for i in range(6)]
    assert all(s.task == "Unseen" and s.image.parent == root / "unseen" / "images" and s.image.is_file()
               for s in bench.unseen)
    formats = {s.meta["format"] for s in bench.unseen}
    assert formats <= {"shared", "own"} and all(s.question in ASKED.values() for s in bench.unseen
                                                  if s.meta["format"] == "shared")
    assert {s.task for s in bench.router} == set(DCL)
    report = check_benchmark(root, progress=False)
    assert report.ok and report.unseen.rows == 6 and "unseen (held-out domain, not a task)" in report.format()
    (root / "unseen" / "images" / "test_00000.png").unlink()
    assert "image not found" in "\n".join(map(str, check_benchmark(root, progress=False).problems))
    assert load_benchmark(write_synth(tmp_path / "none", SynthSpec(train=2, test=2, unseen=0, router_k=1, replay_k=1),
                                      progress=False)).unseen == ()


def test_shared_rows_carry_their_format_fields_and_fin_asks_the_shared_text(tmp_path):
    root = write_synth(tmp_path / "d", SynthSpec(train=12, test=12, val=0, unseen=0, overlap=1.0, router_k=1,
                                                 replay_k=1), progress=False)
    bench = load_benchmark(root)
    questions = {t.name: {s.question for s in t.train + t.test} for t in bench.tasks}
    assert all(q == set(ASKED.values()) for q in questions.values()), questions  # Fin's rule adds its suffix once
    for task in bench.tasks:
        for s in task.train + task.test:
            assert s.meta["format"] == "shared" and s.meta["answer_format"] == s.meta["family"]


def test_knob_values_are_checked(tmp_path, capsys):
    assert SynthSpec().unseen == 100 and SynthSpec(setting="acl").unseen == 0
    assert SynthSpec(overlap=1).overlap == 1.0
    for kwargs, message in (({"overlap": 1.5}, "overlap must be a number between 0 and 1"),
                            ({"visual_overlap": -0.1}, "visual_overlap must be a number between 0 and 1"),
                            ({"overlap": True}, "overlap must be a number"),
                            ({"setting": "acl", "overlap": 0.3}, "overlap is defined for dcl"),
                            ({"setting": "acl", "visual_overlap": 0.3}, "visual_overlap is defined for dcl"),
                            ({"setting": "acl", "unseen": 5}, "defined for dcl"),
                            ({"unseen": -1}, "unseen is 0 or more")):
        with pytest.raises(UserError, match=message):
            SynthSpec(**kwargs)
    assert main(["data", "synth", "--setting", "acl", "--out", str(tmp_path / "a"), "--overlap", "0.5"]) == 2
    assert "overlap is defined for dcl" in capsys.readouterr().err and not (tmp_path / "a").exists()
    assert main(["data", "synth", "--setting", "dcl", "--out", str(tmp_path / "d"), "--train", "2", "--test", "2",
                 "--val", "1", "--unseen", "2", "--overlap", "1", "--visual-overlap", "0.5", "--router-k", "1",
                 "--replay-k", "1", "--no-progress"]) == 0
    stamp = json.loads((tmp_path / "d" / "synth.json").read_text())
    assert (stamp["overlap"], stamp["visual_overlap"], stamp["val"], stamp["unseen"]) == (1.0, 0.5, 1, 2)


def test_manifest_unseen_key_round_trips(tmp_path):
    from mllmcl.data import write_manifest

    root = write_synth(tmp_path / "d", SynthSpec(train=2, test=2, val=0, unseen=2, router_k=1, replay_k=1),
                       progress=False)
    bench = load_benchmark(root)
    write_manifest(root, "dcl", [t.spec for t in bench.tasks], router="router/train.json", unseen="unseen/test.json")
    again = load_benchmark(root)
    assert [t.spec for t in again.tasks] == [t.spec for t in bench.tasks] and len(again.unseen) == 2
    manifest = json.loads((root / "mllmcl.json").read_text())
    (root / "mllmcl.json").write_text(json.dumps({**manifest, "unseen": 3}))
    with pytest.raises(UserError, match="'unseen' must be a file path or null"):
        load_benchmark(root)
    (root / "mllmcl.json").write_text(json.dumps({**manifest, "unseen": "nowhere.json"}))
    with pytest.raises(UserError, match="nowhere.json: file not found"):
        load_benchmark(root)
