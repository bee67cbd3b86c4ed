"""`mllmcl data synth`: the synthetic benchmark is written in the official layout, read back by the same
loader as the real release, passes `data check`, is deterministic, and is never left half-written."""
import json

import pytest

from mllmcl.cli.main import main
from mllmcl.core.errors import UserError
from mllmcl.data.mllm_cl import load_benchmark
from mllmcl.data.synth import MODULES
from mllmcl.data.synth.write import SynthSpec, write_synth


def _tree(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("setting", ["dcl", "acl"])
def test_synth_is_read_back_by_the_release_loader(tmp_path, setting):
    spec = SynthSpec(setting=setting, train=6, test=4, router_k=2, replay_k=3)
    root = write_synth(tmp_path / setting, spec, progress=False)
    bench = load_benchmark(root)
    assert bench.setting == setting and bench.names == list(MODULES[setting])
    for task in bench.tasks:
        assert len(task.train) == 6 and len(task.test) == 4
        assert all(s.image.is_file() and s.answer for s in task.train + task.test)
        if setting == "acl":  # ACL keeps its test set in a separate `<task>_test` folder, as the release does
            assert task.test_folder.name == f"{task.name}_test"
    assert len(bench.router) == 2 * len(bench.tasks) and len(bench.replay) == 3 * len(bench.tasks)
    assert sorted({s.task for s in bench.router}) == sorted(bench.names)
    assert main(["data", "check", "--root", str(root), "--no-progress"]) == 0


def test_fin_training_questions_carry_the_official_answer_format_suffix(tmp_path):
    bench = load_benchmark(write_synth(tmp_path / "d", SynthSpec(train=8, test=8, router_k=1, replay_k=1), progress=False))
    fin = bench.task("Fin")
    for sample in fin.train + fin.test:  # train rows are written as the test prompt rule will ask
        assert sample.question.endswith(("Only answer with yes or no directly.",
                                          "Answer with the given letter directly, e.g., A, B, C, D."))
        assert "directly. Only" not in sample.question and "directly. Answer" not in sample.question


@pytest.mark.slow
def test_same_seed_same_bytes_other_seed_other_data(tmp_path):
    spec = SynthSpec(setting="acl", train=3, test=3, router_k=1, replay_k=1)
    a = _tree(write_synth(tmp_path / "a", spec, progress=False))
    b = _tree(write_synth(tmp_path / "b", spec, progress=False))
    c = _tree(write_synth(tmp_path / "c", SynthSpec(setting="acl", train=3, test=3, router_k=1, replay_k=1, seed=1),
                          progress=False))
    assert a == b
    assert a != c


def test_drawing_in_several_processes_writes_the_same_bytes_as_one(tmp_path, monkeypatch):
    import mllmcl.data.synth.write as write

    spec = SynthSpec(setting="dcl", train=12, test=6, val=3, unseen=4, router_k=2, replay_k=2)
    one = _tree(write_synth(tmp_path / "one", spec, progress=False))
    monkeypatch.setattr(write, "PARALLEL_FROM", 0)  # the same dataset, drawn by helper processes
    monkeypatch.setattr(write, "cpu_cores", lambda: 2)
    several = _tree(write_synth(tmp_path / "several", spec, progress=False))
    assert several == one and len(one) > 5 * (12 + 6 + 3)


def test_existing_dataset_is_reused_and_a_different_one_refused(tmp_path):
    spec = SynthSpec(train=2, test=2, router_k=1, replay_k=1)
    root = write_synth(tmp_path / "d", spec, progress=False)
    stamp = (root / "RS" / "train.json").stat().st_mtime_ns
    assert write_synth(root, spec, progress=False) == root
    assert (root / "RS" / "train.json").stat().st_mtime_ns == stamp
    with pytest.raises(UserError, match="another synthetic dataset"):
        write_synth(root, SynthSpec(train=3, test=2, router_k=1, replay_k=1), progress=False)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("mine")
    with pytest.raises(UserError, match="not a synthetic dataset"):
        write_synth(tmp_path / "other", spec, progress=False)
    assert (tmp_path / "other" / "x.txt").read_text() == "mine"


def test_an_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    import mllmcl.data.synth.write as write

    def fail(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(write, "write_manifest", fail)
    with pytest.raises(KeyboardInterrupt):
        write_synth(tmp_path / "d", SynthSpec(train=2, test=2, router_k=1, replay_k=1), progress=False)
    assert list(tmp_path.iterdir()) == []


def test_two_writers_of_one_dataset_at_once_both_end_with_the_first_ones_copy(tmp_path, monkeypatch):
    """Two runs sharing a data cache may draw the same dataset at once: the one that renames second keeps the
    first one's copy (the same bytes) instead of failing; a different dataset in the way still fails."""
    import mllmcl.data.synth.write as write

    spec, out = SynthSpec(train=2, test=2, router_k=1, replay_k=1), tmp_path / "d"
    draw = write._write_into

    def other_process_finishes_first(root, spec_, progress):
        draw(root, spec_, progress)
        monkeypatch.setattr(write, "_write_into", draw)
        write_synth(out, spec_, progress=False)  # the other writer, renaming first

    monkeypatch.setattr(write, "_write_into", other_process_finishes_first)
    assert write_synth(out, spec, progress=False) == out
    assert [p.name for p in tmp_path.iterdir()] == ["d"]  # no temporary folder left
    assert load_benchmark(out).names == list(MODULES["dcl"])

    other = SynthSpec(train=3, test=2, router_k=1, replay_k=1)

    def another_dataset_finishes_first(root, spec_, progress):
        draw(root, spec_, progress)
        monkeypatch.setattr(write, "_write_into", draw)
        write_synth(tmp_path / "e", other, progress=False)

    monkeypatch.setattr(write, "_write_into", another_dataset_finishes_first)
    with pytest.raises(OSError):
        write_synth(tmp_path / "e", spec, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "e"]


def test_bad_sizes_are_user_errors(tmp_path, capsys):
    assert main(["data", "synth", "--setting", "dcl", "--out", str(tmp_path / "d"), "--train", "5",
                 "--router-k", "9"]) == 2
    assert "router_k" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


def test_the_command_writes_the_ability_setting_with_its_own_default_overlap(tmp_path):
    out = tmp_path / "acl"
    assert main(["data", "synth", "--setting", "acl", "--out", str(out), "--train", "2", "--test", "2", "--val", "1",
                 "--unseen", "0", "--router-k", "1", "--replay-k", "1", "--no-progress"]) == 0
    assert json.loads((out / "mllmcl.json").read_text())["setting"] == "acl"  # overlap 0: acl has no shared formats


def test_test_rows_carry_the_fields_the_official_scorers_read(tmp_path):
    root = write_synth(tmp_path / "a", SynthSpec(setting="acl", train=2, test=12, router_k=1, replay_k=1),
                       progress=False)
    rows = {t: json.loads((root / f"{t}_test" / "test.json").read_text()) for t in MODULES["acl"]}
    assert all(r["answer_type"] for r in rows["OCR"])
    assert all(r["question_type"] in ("multi_choice", "free_form") for r in rows["Math"])
    assert all(r["type"] in ("2D", "3D") and r["task"] for r in rows["VP"])


def test_the_cache_key_is_the_generator_code_not_a_number(tmp_path, monkeypatch):
    import re

    import mllmcl.data.synth.write as write

    key = write.synth_fingerprint()
    assert re.fullmatch(r"[0-9a-f]{12}", key) and write.synth_fingerprint() == key
    names = [name for name, _ in write.fingerprint_inputs()]
    assert {"mllmcl/data/synth/rs.py", "mllmcl/data/synth/rows.py", "mllmcl/data/synth/write.py",
            "mllmcl/data/tasks.py", "Pillow"} <= set(names)
    spec = SynthSpec(train=2, test=2, router_k=1, replay_k=1)
    root = write_synth(tmp_path / "d", spec, progress=False)
    assert json.loads((root / "synth.json").read_text())["fingerprint"] == key

    code = write.fingerprint_inputs()  # a drawer edited since: same spec, other code
    monkeypatch.setattr(write, "fingerprint_inputs",
                        lambda: [(n, d + b"\n# edited" if n.endswith("/rs.py") else d) for n, d in code])
    assert write.synth_fingerprint() != key
    with pytest.raises(UserError, match="other generator code"):
        write_synth(root, spec, progress=False)
    stale = json.loads((root / "synth.json").read_text())  # a folder from before fingerprints: refused too
    stale.pop("fingerprint")
    (root / "synth.json").write_text(json.dumps({**stale, "version": 1}))
    monkeypatch.undo()
    with pytest.raises(UserError, match="other generator code"):
        write_synth(root, spec, progress=False)


@pytest.mark.parametrize("setting", ["dcl", "acl"])
def test_validation_rows_follow_the_test_distribution_with_items_of_their_own(tmp_path, setting):
    from PIL import Image

    from mllmcl.data.check import check_benchmark
    from mllmcl.data.synth import synth_task
    from mllmcl.data.synth.shared import draw_item

    root = write_synth(tmp_path / setting, SynthSpec(setting=setting, train=2, test=5, val=5, router_k=1, replay_k=1),
                       progress=False)
    bench = load_benchmark(root)
    for task in bench.tasks:  # in the test folder: OCR_test/val.json (ACL), RS/val.json (DCL)
        assert task.val_file == task.test_folder / "val.json" and len(task.val) == 5
        assert [s.id for s in task.val] == [f"{task.name}_val_{i:05d}" for i in range(5)]
        assert {s.id for s in task.val}.isdisjoint(s.id for s in task.test)
        assert {s.image.read_bytes() for s in task.val}.isdisjoint(s.image.read_bytes() for s in task.test)
        for i, sample in enumerate(task.val):  # the test drawer (ACL: the shifted one), seeded with "val"
            spec = SynthSpec(setting=setting)
            item = draw_item(synth_task(task.name), 0, "val", i, 48, spec.overlap, spec.visual_overlap, spec.skill)
            assert Image.open(sample.image).tobytes() == item.image.tobytes() and sample.row["text"] == item.question
    report = check_benchmark(root, progress=False)
    assert report.ok and [t.val.rows for t in report.tasks] == [5] * len(bench.tasks)
    assert "val rows" in report.format()
    none = load_benchmark(write_synth(tmp_path / "none", SynthSpec(setting=setting, train=2, test=2, val=0,
                                                                   router_k=1, replay_k=1), progress=False))
    assert all(t.val == () and t.val_file is None for t in none.tasks)
    with pytest.raises(UserError, match="val must be 0 or more"):
        SynthSpec(val=-1)
