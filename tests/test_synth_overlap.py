"""The synthetic benchmark's overlap knobs and held-out domain: shared question formats whose asked text is
identical in every domain (at overlap 1, the default, a question-only router learns nothing beyond the answer
format), one rule per template and domain, each domain's mix of formats, backdrops from the shared pool, the
unseen domain written and loaded apart from the tasks, and the knobs' validation. No model is loaded."""
from __future__ import annotations

import collections
import json

import pytest

from mllmcl.cli.main import main
from mllmcl.core.errors import UserError
from mllmcl.data import load_benchmark
from mllmcl.data.check import check_benchmark
from mllmcl.data.synth import synth_task
from mllmcl.data.synth.draw import SHARED_BACKDROPS, Look
from mllmcl.data.synth.shared import ASKED, FAMILIES, draw_item
from mllmcl.data.synth.write import SynthSpec, write_synth
from mllmcl.data.tasks import builtin_spec

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
            assert q.extra == {**p.extra, "format": "own"} and p.extra["answer_format"] in FAMILIES + ("number",)
        else:
            assert r.extra["format"] == "shared" and r.image.tobytes() == q.image.tobytes()
    assert 8 <= sum(q.extra["format"] == "shared" for q in half) <= 32


def test_at_overlap_1_the_question_says_nothing_beyond_its_answer_format():
    n = 300
    asked = {t: collections.Counter(_asked(t, it) for it in _items(t, n)) for t in DOMAINS}
    for task, counts in asked.items():  # each domain asks one text per format, in its real task's mix
        mix = synth_task(task).mix
        assert set(counts) == {ASKED[f] for f in mix}
        assert all(abs(counts[ASKED[f]] / n - p) < 0.08 for f, p in mix.items()), (task, counts)
    # the best router that reads only the question picks, per question, the task that asks it most: what the
    # mix of answer formats tells, nothing more (chance is 20%); in each domain's own words it is near 100%
    best = sum(max(asked[t][q] for t in DCL) for q in ASKED.values()) / (n * len(DCL))
    assert best < 0.40
    own = {t: collections.Counter(_asked(t, it) for it in _items(t, n, overlap=0.0)) for t in DCL}
    assert sum(max(own[t][q] for t in DCL) for q in set().union(*own.values())) / (n * len(DCL)) > 0.95
    fin_item = next(it for it in _items("Fin", 4) if it.extra["family"] == "yesno")
    assert not fin_item.question.endswith("directly.")  # Fin's rule adds the suffix, once


@pytest.mark.parametrize("task", DOMAINS)
def test_own_questions_end_with_the_instruction_of_their_format(task):
    from mllmcl.data.answer_formats import expected_format, fits, instruction_of

    for it in _items(task, 60, overlap=0.0):
        asked = _asked(task, it)
        fmt = it.extra["answer_format"]
        assert fmt == synth_task(task).formats[it.extra["question_type"]] and fits(it.answer, fmt)
        assert instruction_of(asked) and expected_format({}, asked) in (fmt, "short")


@pytest.mark.parametrize("task", DOMAINS)
def test_shared_items_are_labelled_balanced_and_fit_the_tiny_context(task):
    from pathlib import Path

    from tokenizers import Tokenizer

    import mllmcl.models.tiny as tiny

    answers = collections.defaultdict(collections.Counter)
    assert {it.extra["family"] for it in _items(task, 120)} == set(synth_task(task).mix)
    for family in synth_task(task).mix:  # 120 items per family, so the balance bound is not sampling noise
        for it in _family(task, family, 120):
            assert it.extra["format"] == "shared" and it.extra["question_type"] == f"shared_{family}"
            assert it.extra["answer_format"] == family
            answers[family][it.answer] += 1
    assert set(answers.get("yesno", {"Yes": 1, "No": 1})) == {"Yes", "No"} and set(answers.get("letter", "A")) <= set("ABCD")
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
        if task == "Sci":  # letters from exact-match sources, so a letter is not found inside a longer answer
            source = row["image"].split("/")[-1].split("_")[0]
            assert source in (("MapQA",) if it.extra["family"] == "yesno" else ("AI2D", "TQA"))


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
            stain = task == "Med" and item.extra.get("question_type") in ("stain", "shared_letter")  # stroma = answer
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
    assert formats <= {"shared", "own", "skill"} and all(s.question in ASKED.values() for s in bench.unseen
                                                           if s.meta["format"] == "shared")
    assert {s.task for s in bench.router} == set(DCL)
    report = check_benchmark(root, progress=False)
    assert report.ok and report.unseen.rows == 6 and "unseen (held-out domain, not a task)" in report.format()
    (root / "unseen" / "images" / "test_00000.png").unlink()
    assert "image not found" in "\n".join(map(str, check_benchmark(root, progress=False).problems))
    assert load_benchmark(write_synth(tmp_path / "none", SynthSpec(train=2, test=2, unseen=0, router_k=1, replay_k=1),
                                      progress=False)).unseen == ()


def test_shared_rows_carry_their_format_fields_and_fin_asks_the_shared_text(tmp_path):
    root = write_synth(tmp_path / "d", SynthSpec(train=12, test=12, val=0, unseen=0, overlap=1.0, skill=0.0,
                                                 router_k=1, replay_k=1), progress=False)
    bench = load_benchmark(root)
    questions = {t.name: {s.question for s in t.train + t.test} for t in bench.tasks}
    for task, asked in questions.items():  # Fin's rule adds its suffix once
        assert asked <= {ASKED[f] for f in synth_task(task).mix} and len(asked) >= 2, (task, asked)
    for task in bench.tasks:
        for s in task.train + task.test:
            assert s.meta["format"] == "shared" and s.meta["answer_format"] == s.meta["family"]


def test_knob_values_are_checked(tmp_path, capsys):
    assert SynthSpec().unseen == 100 and SynthSpec(setting="acl").unseen == 0
    assert SynthSpec(overlap=1).overlap == 1.0 and SynthSpec().overlap == 1.0 and SynthSpec(setting="acl").overlap == 0
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


def _marker_colours(image) -> list[str]:
    """The marker colours of the badges found in the image's four corners: a dark-edged square whose centre
    has a marker colour."""
    from mllmcl.data.synth.shared import BADGE, MARKERS

    side = image.size[0]
    badge = max(2, round(side * BADGE))
    found = []
    for x in (1, side - badge - 1):
        for y in (1, side - badge - 1):
            rgb = image.convert("RGB")
            pixel, edge = rgb.getpixel((x + badge // 2, y + badge // 2)), rgb.getpixel((x, y + badge // 2))
            if max(edge) > 25:
                continue
            found += [name for name, rgb in MARKERS.items() if max(abs(a - b) for a, b in zip(pixel, rgb)) <= 10]
    return found


@pytest.mark.parametrize("task", DCL)
def test_skill_items_ask_one_rule_in_every_domain(task):
    from mllmcl.data.answer_formats import fits
    from mllmcl.data.synth.rows import image_name, question_row
    from mllmcl.data.synth.shared import MARKERS, SKILL_ASKED
    from mllmcl.eval.scorers import SCORERS

    scorer = SCORERS.build(task.lower())
    for i in range(20):  # the domain's official rule gives the reference answer full marks
        it = draw_item(synth_task(task), 0, "test", i, 48, 1.0, 0.0, 1.0)
        assert scorer.judge(question_row(it, task, i, image_name(it, "test", i)), it.answer) == 1.0
    items = [draw_item(synth_task(task), 0, "train", i, 48, 1.0, 0.0, 1.0) for i in range(60)]
    assert {it.extra["family"] for it in items} == set(synth_task(task).mix)  # the domain's own mix of formats
    for it in items:
        family = it.extra["family"]
        assert it.extra["format"] == "skill" and it.extra["answer_format"] == family and fits(it.answer, family)
        assert _asked(task, it) == SKILL_ASKED[family]
        colours = _marker_colours(it.image)
        if it.answer == "No":
            assert colours == []
            continue
        assert len(colours) == 1, (task, it.answer, colours)  # one badge, and its colour is the answer
        expected = {"yesno": "Yes", "letter": "ABCD"[list(MARKERS).index(colours[0])], "text": colours[0]}[family]
        assert it.answer == expected


@pytest.mark.parametrize("task", DOMAINS)
def test_the_skill_knob_only_turns_more_items_into_skill_items(task):
    plain = [draw_item(synth_task(task), 0, "train", i, 48, 1.0, 0.0, 0.0) for i in range(40)]
    half = [draw_item(synth_task(task), 0, "train", i, 48, 1.0, 0.0, 0.5) for i in range(40)]
    most = [draw_item(synth_task(task), 0, "train", i, 48, 1.0, 0.0, 0.9) for i in range(40)]
    for p, q, r in zip(plain, half, most):
        if q.extra["format"] != "skill":
            assert q.image.tobytes() == p.image.tobytes() and (q.question, q.answer, q.extra) == (p.question, p.answer, p.extra)
        else:
            assert r.extra["format"] == "skill" and r.image.tobytes() == q.image.tobytes()
    assert 8 <= sum(q.extra["format"] == "skill" for q in half) <= 32


def test_skill_items_keep_the_question_blind_to_the_domain():
    from mllmcl.data.synth.shared import SKILL_ASKED

    n = 300
    asked = {t: collections.Counter(_asked(t, draw_item(synth_task(t), 0, "train", i, 48, 1.0, 0.0, 0.5))
                                    for i in range(n)) for t in DCL}
    assert all(set(c) <= set(ASKED.values()) | set(SKILL_ASKED.values()) for c in asked.values())
    questions = set().union(*asked.values())
    assert sum(max(asked[t][q] for t in DCL) for q in questions) / (n * len(DCL)) < 0.40


def test_skill_values_are_checked():
    from mllmcl.data.synth.shared import DEFAULT_SKILL

    assert SynthSpec().skill == DEFAULT_SKILL and SynthSpec(setting="acl").skill == 0.0
    assert SynthSpec(skill=1).skill == 1.0
    with pytest.raises(UserError, match="skill must be a number between 0 and 1"):
        SynthSpec(skill=1.2)
    with pytest.raises(UserError, match="skill is defined for dcl"):
        SynthSpec(setting="acl", skill=0.3)
