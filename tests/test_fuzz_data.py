"""Fuzz: a data root's files (LLaVA training rows, test rows, router and replay files, the manifest) and
its images, through `load_benchmark` and `mllmcl data check`, plus the task names typed on the command line.

Property: loading succeeds or raises one UserError (one line) naming the file, row or root; `data check`
exits 0 (all well), 1 (a report naming the file of every problem) or 2 (one line `mllmcl: error: …`); no
traceback, and the root is left as it was.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from fuzzkit import (JUNK, SPECIAL_TEXT, TEXT, assert_keeps_promise, assert_user_error, cli, fuzz, json_file,
                     png_claiming, snapshot)
from mllmcl.core.errors import UserError
from mllmcl.data import load_benchmark, load_image

TRAIN = [{"id": f"rs-{i}", "image": f"images/tr{i}.png", "conversations": [
    {"from": "human", "value": "<image>\nWhat is shown?"}, {"from": "gpt", "value": "a square"},
    {"from": "human", "value": "Is it red?"}, {"from": "gpt", "value": "yes"}]} for i in range(2)]
TEST = [{"question_id": f"rs-t{i}", "image": f"images/te{i}.png", "text": "Is it red?", "answer": "yes",
         "category": "presence"} for i in range(2)]
EXTRA = [{"id": f"x-{i}", "image": f"RS/images/tr{i}.png", "conversations": [
    {"from": "human", "value": "<image>\nWhich task?"}, {"from": "gpt", "value": "RS"}]} for i in range(2)]
MANIFEST = {"setting": "dcl", "tasks": [{"name": "RS"}, {"name": "Fin", "folder": "Fin"}],
            "router": "router/train.json", "replay": "replay/train.json"}
FIN_TEST = [{"question_id": "fin-t0", "image": "images/te0.png", "text": "Up?", "answer": "Yes"}]

FILES = {"RS/train.json": TRAIN, "RS/test.json": TEST, "router/train.json": EXTRA, "replay/train.json": EXTRA,
         "Fin/train.json": TRAIN, "Fin/test.json": FIN_TEST, "mllmcl.json": MANIFEST}


def _png(path: Path, colour=(200, 30, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), colour).save(path)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """A valid two-task root (RS, Fin) with router and replay files; each example breaks one file and
    puts it back."""
    root = tmp_path_factory.mktemp("root")
    for name, rows in FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(json.dumps(rows))
    for task in ("RS", "Fin"):
        for i in range(2):
            _png(root / task / "images" / f"tr{i}.png")
            _png(root / task / "images" / f"te{i}.png")
    assert load_benchmark(root).names == ["RS", "Fin"]
    return root


def _check(root: Path, names: list, *extra: str) -> None:
    """The property for load_benchmark and `data check` on `root` as it is now."""
    try:
        load_benchmark(root)
    except UserError as err:
        assert_user_error(err, names)
    before = snapshot(root)
    outcome = cli(["data", "check", "--root", root, "--no-progress", *extra])
    assert_keeps_promise(outcome, names, ok=(0, 1))
    if outcome.code == 1:
        assert "FAILED" in outcome.out and any(str(n) in outcome.out for n in names), str(outcome)
    assert snapshot(root) == before


@pytest.mark.slow
@given(data=st.data())
@fuzz(120)
def test_every_file_of_a_data_root(root, data):
    name = data.draw(st.sampled_from(sorted(FILES)), label="file")
    content = data.draw(json_file(FILES[name]), label="content")
    path = root / name
    path.write_bytes(content)
    try:
        _check(root, [path, root])
    finally:
        path.write_text(json.dumps(FILES[name]))


@given(data=st.data())
@fuzz(40)
def test_a_file_replaced_by_a_folder_or_missing(root, data):
    name = data.draw(st.sampled_from(sorted(FILES)), label="file")
    path = root / name
    how = data.draw(st.sampled_from(["folder", "missing"]), label="how")
    path.unlink()
    if how == "folder":
        path.mkdir()
    try:
        _check(root, [path, root])
    finally:
        if path.is_dir():
            path.rmdir()
        path.write_text(json.dumps(FILES[name]))


# ---------------------------------------------------------------------------------------------- images

def _image_bytes(kind: str, draw) -> bytes | None:
    """Bytes of a broken (or merely unusual) image file; None = make it a folder."""
    import io

    good = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(good, "PNG")
    png = good.getvalue()
    if kind == "zero bytes":
        return b""
    if kind == "truncated":
        return png[:draw(st.integers(1, len(png) - 1))]
    if kind == "flipped":
        at = draw(st.integers(0, len(png) - 1))
        return png[:at] + bytes([png[at] ^ 0x5A]) + png[at + 1:]
    if kind == "jpeg named .png":
        out = io.BytesIO()
        Image.new("RGB", (8, 8)).save(out, "JPEG")
        return out.getvalue()
    if kind == "text":
        return b"not an image at all\n"
    if kind == "huge dimensions":
        return png_claiming(draw(st.sampled_from([(100_000, 100_000), (1, 10**6), (65_535, 65_535)])))
    if kind == "garbage":
        return draw(st.binary(max_size=64))
    return None



IMAGE_KINDS = ["zero bytes", "truncated", "flipped", "jpeg named .png", "text", "huge dimensions", "garbage",
               "folder"]


@pytest.mark.slow
@given(data=st.data())
@fuzz(40)
def test_broken_images(root, data):
    kind = data.draw(st.sampled_from(IMAGE_KINDS), label="kind")
    path = root / "RS" / "images" / data.draw(st.sampled_from(["tr0.png", "te1.png"]), label="image")
    content = _image_bytes(kind, data.draw)
    path.unlink()
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    try:
        try:
            load_image(path)
        except UserError as err:
            assert_user_error(err, [path])
        decode = data.draw(st.booleans(), label="decode")
        _check(root, [path, root], *(["--decode"] if decode else []))
    finally:
        if path.is_dir():
            path.rmdir()
        else:
            path.unlink()
        _png(path)


# ---------------------------------------------------------------------------------------------- names

@given(tasks=st.lists(st.one_of(TEXT, SPECIAL_TEXT, st.sampled_from(["rs", "Rs", "FIN", "fin", "med"])),
                      min_size=1, max_size=3),
       folder=st.one_of(TEXT, SPECIAL_TEXT, st.just("RS=RS"), st.just("rs=RS"), st.just("fin=Fin")))
@pytest.mark.slow
@fuzz(60)
def test_task_names_on_the_command_line(root, tasks, folder):
    tasks_arg = ",".join(tasks)
    if tasks_arg.startswith("-"):
        tasks_arg = " " + tasks_arg  # argparse would read it as an option
    if folder.startswith("-"):
        folder = " " + folder
    before = snapshot(root)
    outcome = cli(["data", "check", "--root", root, "--no-progress", "--tasks", tasks_arg, "--folder", folder])
    assert_keeps_promise(outcome, ["--tasks", "--folder", "task", root], ok=(0, 1))
    assert snapshot(root) == before


@pytest.mark.parametrize("typed", ["RS", "rs", "Rs", "rS"])
def test_task_names_are_case_insensitive(root, typed):
    assert cli(["data", "check", "--root", root, "--no-progress", "--tasks", typed]).code == 0
    assert load_benchmark(root, tasks=[typed]).names == ["RS"]
    assert load_benchmark(root).task(typed).name == "RS"
    assert cli(["data", "check", "--root", root, "--no-progress", "--folder", f"{typed}=RS"]).code == 0


def test_unknown_task_lists_the_names_as_written(root):
    outcome = cli(["data", "check", "--root", root, "--no-progress", "--tasks", "chess"])
    assert outcome.code == 2 and "'chess'" in outcome.err and "RS, Fin" in outcome.err


@given(doc=JUNK)
@fuzz(20)
def test_junk_rows_through_load_benchmark(tmp_path_factory, doc):
    """Whole files of junk, straight into a fresh root (no valid neighbour files to lean on)."""
    root = tmp_path_factory.mktemp("junk")
    try:
        (root / "RS").mkdir()
        (root / "RS" / "train.json").write_text(json.dumps(doc).replace('"@@DEEP@@"', "[" * 50_000 + "]" * 50_000))
        (root / "RS" / "test.json").write_text(json.dumps([doc]))
        with pytest.raises(UserError) as err:
            load_benchmark(root, "dcl", tasks=["RS"])
        assert_user_error(err.value, [root])
    finally:
        shutil.rmtree(root)
