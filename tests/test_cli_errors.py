"""One bad input of each kind for every sub-command that reads input (`ls` reads none): exit status 2, exactly
one stderr line `mllmcl: error: …` that names the file, row or key, and nothing written. Plus the real
process: status and stderr as a shell sees them, and `--debug` / MLLMCL_DEBUG=1 bringing the traceback back."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from fuzzkit import assert_one_line_error, cli, one_thread, png_claiming, snapshot


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with one_thread():
        yield


def _png(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (16, 16), (200, 30, 30)).save(path)
    return path


def _write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def _check(tmp_path: Path, argv: list, names: list) -> str:
    """Run `mllmcl argv` (strings may use {t} for tmp_path) and check the one-line error; nothing written."""
    argv = [str(a).format(t=tmp_path) for a in argv]
    before = snapshot(tmp_path)
    outcome = cli(argv)
    line = assert_one_line_error(outcome, [str(n).format(t=tmp_path) for n in names])
    assert snapshot(tmp_path) == before, f"files changed: {outcome}"
    return line


# ---------------------------------------------------------------------------------------------- metrics

@pytest.mark.parametrize("content, names", [
    (None, ["{t}/m.json", "no such file"]),
    ("{oops", ["{t}/m.json", "not valid JSON"]),
    (b"\xff\xfe\x00", ["{t}/m.json"]),
    ("[1, 2]", ["{t}/m.json", '"matrix"']),
    ('{"matrix": [[1, 2], [3]]}', ["{t}/m.json", "ragged"]),
    ('{"matrix": [[1, NaN], [3, 4]]}', ["{t}/m.json", "non-finite"]),
    ('{"matrix": [[1e308, 1e308], [1e308, 1e308]]}', ["{t}/m.json", "too large"]),
    ('{"matrix": [[' + "9" * 5000 + "]]}", ["{t}/m.json"]),
    ('{"matrix": [[1, 2], [3, 4]], "zero_shot": [1]}', ["{t}/m.json", "zero_shot"]),
    ('{"matrix": [["a", 2], [3, 4]]}', ["{t}/m.json", "numbers"]),
])
def test_metrics(tmp_path, content, names):
    if content is not None:
        _write(tmp_path / "m.json", content)
    line = _check(tmp_path, ["metrics", "{t}/m.json"], names[:1])
    assert names[-1].format(t=tmp_path) in line


def test_metrics_on_a_folder(tmp_path):
    _check(tmp_path, ["metrics", "{t}"], ["{t}: is a folder"])


# ---------------------------------------------------------------------------------------------- report

GOOD_RESULTS = {"format": 1, "tasks": ["RS", "Med"],
                "methods": {"seq-lora": {"sequential": True, "matrix": [[90, 10], [50, 80]], "final": [50, 80],
                                         "metrics": {"MFN": 65.0}}}}


@pytest.mark.parametrize("results, names", [
    (None, ["{t}/run", "no results.json"]),
    ("{oops", ["{t}/run/results.json", "not valid JSON"]),
    ({**GOOD_RESULTS, "format": 2}, ["{t}/run/results.json", "format 2"]),
    ({**GOOD_RESULTS, "tasks": "RS"}, ["{t}/run/results.json", "'tasks'"]),
    ({**GOOD_RESULTS, "run": [1]}, ["{t}/run/results.json", "run: must be an object"]),
    ({**GOOD_RESULTS, "methods": {"seq-lora": {"sequential": True, "matrix": [[90, "x"]]}}},
     ["{t}/run/results.json", "methods['seq-lora'].matrix[0][1]"]),
    ({**GOOD_RESULTS, "methods": {"seq-lora": {"metrics": {"MFN": [65]}}}},
     ["{t}/run/results.json", "methods['seq-lora'].metrics['MFN']"]),
    ({**GOOD_RESULTS, "methods": {"mr-lora": {"routing": {"accuracy": 99, "stages": [{"seen": None}]}}}},
     ["{t}/run/results.json", "routing.stages[0].seen"]),
    ({**GOOD_RESULTS, "methods": {"x": {"final": [1e400]}}}, ["{t}/run/results.json", "final[0]"]),
])
def test_report(tmp_path, results, names):
    (tmp_path / "run").mkdir()
    if results is not None:
        _write(tmp_path / "run" / "results.json", results if isinstance(results, str) else
               json.dumps(results).replace("Infinity", "1" + "0" * 400))
    line = _check(tmp_path, ["report", "{t}/run"], names[:1])
    assert names[-1].format(t=tmp_path) in line


@pytest.mark.parametrize("argv, names", [
    (["report", "{t}/nope"], ["{t}/nope", "no such run folder"]),
    (["report", "{t}/a", "{t}/b"], ["--out"]),
    (["report", "{t}/a", "{t}/b", "--out", "{t}/file"], ["{t}/file"]),
    (["report", "{t}/a", "--out", "{t}/file/sub"], ["{t}/file/sub"]),
])
def test_report_folders(tmp_path, argv, names):
    for run in ("a", "b"):
        _write(tmp_path / run / "results.json", json.dumps(GOOD_RESULTS))
    _write(tmp_path / "file", "not a folder")
    _check(tmp_path, argv, names)


# ---------------------------------------------------------------------------------------------- score

QUESTIONS = [{"question_id": "q1", "answer": "yes", "text": "Is it?"}]


@pytest.mark.parametrize("questions, predictions, extra, names", [
    (QUESTIONS, '{"question_id": "q1", "text": "yes"}', ["--task", "chess"], ["'chess'", "RS, Med, AD"]),
    (None, '{"question_id": "q1", "text": "yes"}', ["--task", "Med"], ["{t}/test.json", "no such questions file"]),
    ("[{", '{"question_id": "q1", "text": "yes"}', ["--task", "med"], ["{t}/test.json", "not valid JSON"]),
    ([{"question_id": ["q1"], "answer": "yes"}], "", ["--task", "MED"], ["{t}/test.json", "item 0"]),
    (QUESTIONS, b'\xff{"question_id": "q1"}', ["--task", "Med"], ["{t}/p.jsonl:1"]),
    (QUESTIONS, '{"question_id": "q1", "text": "yes"}\n{"question_id": "q9", "text": "no"}', ["--task", "Med"],
     ["{t}/p.jsonl:2", "q9"]),
    (QUESTIONS, '{"question_id": {"a": 1}, "text": "x"}', ["--task", "Med"], ["{t}/p.jsonl:1", "question_id"]),
    (QUESTIONS, '{"question_id": "q1", "text": "yes"}', ["--task", "Med", "--submission", "{t}/s.tsv"],
     ["--submission", "APP"]),
    (QUESTIONS, '{"question_id": "q1", "text": "yes"}', ["--task", "Med", "--judge-url", "http://127.0.0.1:9"],
     ["--judge-url", "Math"]),
    ([{"question_id": "ALL_1", "answer": "A"}], '{"question_id": "ALL_1", "text": "A"}',
     ["--task", "APP", "--submission", "{t}"], ["{t}"]),
    ([{"question_id": "o1", "answer": "x", "answer_type": "Poetry"}], '{"question_id": "o1", "text": "x"}',
     ["--task", "ocr"], ["{t}/test.json", "answer_type"]),
])
def test_score(tmp_path, questions, predictions, extra, names):
    if questions is not None:
        _write(tmp_path / "test.json", questions if isinstance(questions, str) else json.dumps(questions))
    _write(tmp_path / "p.jsonl", predictions)
    line = _check(tmp_path, ["score", "--questions", "{t}/test.json", "--predictions", "{t}/p.jsonl", *extra],
                  names[:1])
    assert all(n.format(t=tmp_path) in line for n in names), line


@pytest.mark.parametrize("typed", ["RS", "rs", "Rs"])
def test_score_task_names_in_any_case(tmp_path, typed):
    _write(tmp_path / "test.json", json.dumps(QUESTIONS))
    _write(tmp_path / "p.jsonl", '{"question_id": "q1", "text": "yes"}')
    outcome = cli(["score", "--task", typed, "--questions", tmp_path / "test.json", "--predictions",
                   tmp_path / "p.jsonl"])
    assert outcome.code == 0 and json.loads(outcome.out)["task"] == "rs", str(outcome)


# ---------------------------------------------------------------------------------------------- data check

def _root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    rows = [{"id": "r0", "image": "images/0.png", "conversations": [{"from": "human", "value": "<image>\nQ?"},
                                                                    {"from": "gpt", "value": "A"}]}]
    _write(root / "RS" / "train.json", json.dumps(rows))
    _write(root / "RS" / "test.json", json.dumps([{"question_id": "t0", "image": "images/0.png", "text": "Q?",
                                                   "answer": "A"}]))
    _png(root / "RS" / "images" / "0.png")
    _write(root / "mllmcl.json", json.dumps({"setting": "dcl", "tasks": [{"name": "RS"}]}))
    return root


@pytest.mark.parametrize("manifest, extra, names", [
    (None, ["--root", "{t}/nope"], ["{t}/nope", "data root not found"]),
    (None, ["--root", "{t}/" + "x" * 300], ["x" * 300]),
    ("{oops", [], ["{t}/root/mllmcl.json", "not valid JSON"]),
    ('{"setting": "dcl", "tasks": [{"name": "RS", "answers_public": "x"}]}', [],
     ["{t}/root/mllmcl.json", "answers_public"]),
    ('{"setting": "dcl", "tasks": [{"name": "RS"}, {"name": "RS"}]}', [], ["{t}/root/mllmcl.json", "twice"]),
    ('{"setting": "dcl", "tasks": [{"name": "RS", "prompt_rule": ["fin"]}]}', [], ["{t}/root/mllmcl.json"]),
    (None, ["--tasks", "chess"], ["'chess'", "RS"]),
    (None, ["--folder", "RS"], ["--folder", "TASK=FOLDER"]),
    (None, ["--folder", "chess=RS"], ["'chess'"]),
    (None, ["--setting", "acl"], ["{t}/root/mllmcl.json", "'dcl'"]),
])
def test_data_check(tmp_path, manifest, extra, names):
    root = _root(tmp_path)
    if manifest is not None:
        _write(root / "mllmcl.json", manifest)
    argv = ["data", "check", "--no-progress", *(["--root", "{t}/root"] if "--root" not in extra else []), *extra]
    line = _check(tmp_path, argv, names[:1])
    assert all(n.format(t=tmp_path) in line for n in names), line


@pytest.mark.parametrize("file, content, problem", [
    ("RS/train.json", '[{"id": "r0", "image": "' + "a" * 300 + '", "conversations": []}]', "row 0"),
    ("RS/test.json", '[{"question_id": ' + "9" * 5000 + "}]", "not valid JSON"),
    ("RS/test.json", "[" * 100_000, "nested too deeply"),
    ("RS/train.json", '["unterminated', "not valid JSON: Unterminated string starting at (line 1"),
    ("RS/images/0.png", b"\x89PNG\r\n\x1a\n", "cannot decode image"),
    ("RS/train.json", '[{"id": "r0", "image": "' + "a" * 300 + '", "conversations": [{"from": "human", "value": '
                      '"Q"}, {"from": "gpt", "value": "A"}]}]', "image not found"),
    ("RS/train.json", '[{"id": "r0", "image": "\\ud800.png", "conversations": [{"from": "human", "value": "Q"}, '
                      '{"from": "gpt", "value": "A"}]}]', "\\ud800.png"),
])
def test_data_check_reports_file_and_row(tmp_path, file, content, problem):
    """Problems in rows and images are a report (exit 1) naming the file, not an error; loading the same
    root (which reads rows, not images) is one line naming the count and the first problem."""
    from mllmcl.core.errors import UserError
    from mllmcl.data import load_benchmark

    root = _root(tmp_path)
    _write(root / file, content)
    outcome = cli(["data", "check", "--root", root, "--no-progress"])
    assert outcome.code == 1 and "Traceback" not in outcome.err, str(outcome)
    assert problem in outcome.out and str(root / "RS") in outcome.out, outcome.out
    if problem in ("cannot decode image", "image not found", "\\ud800.png"):
        return
    with pytest.raises(UserError) as err:
        load_benchmark(root)
    message = str(err.value)
    assert "\n" not in message and "1 problem(s)" in message and "mllmcl data check --root" in message


def test_data_check_task_names_in_any_case(tmp_path):
    root = _root(tmp_path)
    for typed in ("rs", "Rs", "RS"):
        assert cli(["data", "check", "--root", root, "--no-progress", "--tasks", typed]).code == 0
        assert cli(["data", "check", "--root", root, "--no-progress", "--folder", f"{typed}=RS"]).code == 0


# ---------------------------------------------------------------------------------------------- data synth

@pytest.mark.parametrize("setup, names", [
    (lambda t: _write(t / "out", "a file"), ["{t}/out", "is a file"]),
    (lambda t: _write(t / "out" / "mine.txt", "keep me"), ["{t}/out", "not a synthetic dataset"]),
    (lambda t: _write(t / "out" / "synth.json", "{oops"), ["{t}/out/synth.json", "not valid JSON"]),
    (lambda t: _write(t / "out" / "synth.json", "[1]"), ["{t}/out/synth.json"]),
    (lambda t: _write(t / "out" / "synth.json", '{"setting": "acl"}'), ["{t}/out", "another synthetic dataset"]),
])
def test_data_synth(tmp_path, setup, names):
    setup(tmp_path)
    line = _check(tmp_path, ["data", "synth", "--setting", "dcl", "--out", "{t}/out", "--train", "1", "--test", "1",
                             "--router-k", "0", "--replay-k", "0", "--no-progress"], names[:1])
    assert names[-1].format(t=tmp_path) in line


# ---------------------------------------------------------------------------------------------- ask


def _adapter(micro_checkpoint: Path, folder: Path, break_it) -> Path:
    import shutil

    shutil.copytree(micro_checkpoint / "adapters" / "user", folder)
    break_it(folder)
    return folder


def _config_edit(**changes):
    def edit(folder: Path) -> None:
        config = json.loads((folder / "adapter_config.json").read_text())
        (folder / "adapter_config.json").write_text(json.dumps({**config, **changes}))
    return edit


def _wider(folder: Path) -> None:
    from safetensors.torch import load_file, save_file

    tensors = load_file(folder / "adapter_model.safetensors")
    for name, tensor in tensors.items():
        if "lora_A" in name:
            tensors[name] = tensor.new_zeros(tensor.shape[0], tensor.shape[1] * 2)
    save_file(tensors, folder / "adapter_model.safetensors")


IMAGES = {
    "missing": (None, "image file not found"),
    "zero bytes": (b"", "cannot decode image"),
    "truncated": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "cannot decode image"),
    "text with .png": (b"hello", "cannot decode image"),
    "huge dimensions": (png_claiming((100_000, 100_000)), "image too large"),
    "folder": ("folder", "a folder, not an image"),
}


@pytest.mark.parametrize("kind", sorted(IMAGES))
def test_ask_image(micro_checkpoint, tmp_path, kind):
    content, message = IMAGES[kind]
    _png(tmp_path / "good.png")
    if content == "folder":
        (tmp_path / "bad.png").mkdir()
    elif content is not None:
        _write(tmp_path / "bad.png", content)
    line = _check(tmp_path, ["ask", "What?", "--image", "{t}/good.png", "{t}/bad.png",
                             "--backbone", f"hf:{micro_checkpoint / 'model'}"], ["{t}/bad.png"])
    assert message in line


ADAPTERS = {
    "no folder": (None, "no saved adapter here"),
    "no config": (lambda f: (f / "adapter_config.json").unlink(), "adapter_config.json missing"),
    "no weights": (lambda f: (f / "adapter_model.safetensors").unlink(), "adapter_model.safetensors: missing"),
    "corrupt weights": (lambda f: _write(f / "adapter_model.safetensors", os.urandom(100)),
                        "adapter_model.safetensors: not a readable safetensors file"),
    "truncated weights": (lambda f: _write(f / "adapter_model.safetensors",
                                           (f / "adapter_model.safetensors").read_bytes()[:5000]),
                          "adapter_model.safetensors: not a readable safetensors file"),
    "config not JSON": (lambda f: _write(f / "adapter_config.json", "{"), "adapter_config.json: not valid JSON"),
    "config not LoRA": (_config_edit(peft_type="IA3"), "not a LoRA adapter"),
    "config rank is text": (_config_edit(r="8"), "'r' must be a positive integer"),
    "config rank differs": (_config_edit(r=5), "holds rank 2"),
    "config uses DoRA": (_config_edit(use_dora=True), "'use_dora'"),
    "another base model": (_wider, "made for another base model"),
    "config of another base model": (_config_edit(target_modules=["c_attn", "c_proj"]), "adapter_config.json"),
    "recipe not an object": (lambda f: _write(f / "mllmcl_recipe.json", "null"), "mllmcl_recipe.json"),
}


@pytest.mark.parametrize("kind", sorted(ADAPTERS))
def test_ask_adapter(micro_checkpoint, tmp_path, kind):
    break_it, message = ADAPTERS[kind]
    _png(tmp_path / "red.png")
    if break_it is not None:
        _adapter(micro_checkpoint, tmp_path / "adapter", break_it)
    line = _check(tmp_path, ["ask", "What?", "--image", "{t}/red.png", "--adapter", "{t}/adapter",
                             "--backbone", f"hf:{micro_checkpoint / 'model'}"], ["{t}/adapter"])
    assert message in line


def test_ask_adapter_of_another_base_on_the_tiny_backbone(micro_checkpoint, tmp_path):
    """The micro model's adapter given to the shipped tiny backbone: a real adapter of another base model."""
    _png(tmp_path / "red.png")
    adapter = micro_checkpoint / "adapters" / "user"
    line = _check(tmp_path, ["ask", "What?", "--image", "{t}/red.png", "--adapter", adapter],
                  [adapter / "adapter_model.safetensors"])
    assert "made for another base model" in line and "backbone tiny" in line


@pytest.mark.parametrize("backbone, names", [
    ("nope", ["'nope'", "known: hf, tiny"]),
    ("hf:", ["hf:", "needs a path"]),
    ("hf:{t}/nope", ["{t}/nope"]),
    ("hf:{t}", ["{t}", "no checkpoint here"]),
])
def test_ask_backbone(tmp_path, backbone, names):
    _png(tmp_path / "red.png")
    line = _check(tmp_path, ["ask", "What?", "--image", "{t}/red.png", "--backbone", backbone], names[:1])
    assert names[-1].format(t=tmp_path) in line


def test_ask_checkpoint_with_corrupt_weights(micro_checkpoint, tmp_path):
    import shutil

    shutil.copytree(micro_checkpoint / "model", tmp_path / "model")
    _write(tmp_path / "model" / "model.safetensors", b"\x00" * 64)
    _png(tmp_path / "red.png")
    line = _check(tmp_path, ["ask", "What?", "--image", "{t}/red.png", "--backbone", "hf:{t}/model"], ["{t}/model"])
    assert "cannot load the checkpoint" in line


@pytest.mark.parametrize("argv, names", [
    (["ask", "What?"], ["--image"]),
    (["ask", "What?", "--image", "x.png", "--max-new-tokens", "0"], ["--max-new-tokens", "positive integer"]),
    (["ask", "What?", "--image", "x.png", "--max-new-tokens", "many"], ["--max-new-tokens", "'many'"]),
])
def test_ask_options(tmp_path, argv, names):
    line = _check(tmp_path, argv, names[:1])
    assert names[-1] in line and line.endswith("(see `mllmcl ask --help`)")


# ---------------------------------------------------------------------------------------------- pretrain, demo, bench

@pytest.mark.parametrize("argv, names", [
    (["pretrain", "--check", "--backbone", "hf:{t}/nope"], ["{t}/nope"]),
    (["pretrain", "--check", "--backbone", "gpt"], ["'gpt'"]),
    (["pretrain", "--vision-steps", "-1"], ["--vision-steps"]),
    (["pretrain", "--out", "{t}/file"], ["{t}/file", "is a file"]),
    (["pretrain", "--out", "{t}/mine"], ["{t}/mine", "no checkpoint"]),
    (["pretrain", "--lr", "nan"], ["--lr"]),
])
def test_pretrain(tmp_path, argv, names):
    _write(tmp_path / "file", "x")
    _write(tmp_path / "mine" / "thesis.tex", "years of work")
    line = _check(tmp_path, argv, names[:1])
    assert names[-1].format(t=tmp_path) in line


def test_demo(tmp_path):
    _write(tmp_path / "file", "x")
    _check(tmp_path, ["demo", "--out", "{t}/file/demo"], ["{t}/file/demo"])


@pytest.mark.parametrize("setup, argv, names", [
    (None, ["bench", "routing", "--run", "{t}/nope"], ["{t}/nope", "no finished 'mr-lora' run"]),
    ("{oops", ["bench", "routing", "--run", "{t}/run"], ["{t}/run/results.json", "not valid JSON"]),
    ('{"methods": []}', ["bench", "routing", "--run", "{t}/run"], ["{t}/run/results.json", "results format None"]),
    (None, ["bench", "chess"], ["'chess'"]),
])
def test_bench(tmp_path, setup, argv, names):
    if setup is not None:
        _write(tmp_path / "run" / "results.json", setup)
    line = _check(tmp_path, argv, names[:1])
    assert names[-1].format(t=tmp_path) in line


# ---------------------------------------------------------------------------------------------- serving

@pytest.mark.parametrize("setup, argv, names", [
    (None, ["serve", "{t}/nope"], ["{t}/nope", "neither an expert library"]),
    (None, ["library", "export", "--run", "{t}/nope", "--out", "{t}/lib2"], ["{t}/nope", "no such run folder"]),
    ("{oops", ["library", "export", "--run", "{t}/run", "--out", "{t}/lib2"],
     ["{t}/run/results.json", "not valid JSON"]),
    ("{oops", ["serve", "{t}/run"], ["{t}/run/results.json", "not valid JSON"]),
    (None, ["expert", "ls", "{t}/nope"], ["{t}/nope", "not an expert library"]),
    (None, ["expert", "rollback", "{t}/nope"], ["{t}/nope", "not an expert library"]),
    (None, ["expert", "remove", "{t}/nope", "Colors"], ["{t}/nope", "not an expert library"]),
    (None, ["expert", "add", "{t}/nope", "--name", "New", "--train", "{t}/train.json"],
     ["{t}/nope", "not an expert library"]),
    ("lib:{oops", ["expert", "ls", "{t}/lib"], ["{t}/lib/library.json", "not valid JSON"]),
    ('lib:{"format": 1, "versions": 3}', ["serve", "{t}/lib"], ["{t}/lib/library.json", "'backbone'"]),
    ('lib:{"format": 7}', ["expert", "rollback", "{t}/lib"], ["{t}/lib/library.json", "format 7"]),
    (None, ["bench", "serve", "--library", "{t}/nope"], ["{t}/nope", "neither an expert library"]),
    (None, ["bench", "openworld", "--library", "{t}/nope"], ["{t}/nope", "needs an expert library"]),
])
def test_serving_commands(tmp_path, setup, argv, names):
    """The serving commands refuse a missing or damaged library or run before loading any model."""
    if setup is not None and setup.startswith("lib:"):
        _write(tmp_path / "lib" / "library.json", setup.removeprefix("lib:"))
    elif setup is not None:
        _write(tmp_path / "run" / "results.json", setup)
    line = _check(tmp_path, argv, names[:1])
    assert names[-1].format(t=tmp_path) in line


# ---------------------------------------------------------------------------------------------- run, sweep

@pytest.mark.parametrize("command", ["run", "sweep"])
@pytest.mark.parametrize("setup, argv, names", [
    (None, ["--methods", "seq-lora,nosuch"], ["nosuch"]),
    (None, ["--methods", "mr-lora[nosuch]"], ["mr-lora[nosuch]"]),
    (None, ["--methods", "ewc", "ewc.lambda=-1"], ["ewc.lambda"]),
    (None, ["train.epoch=1"], ["train.epoch"]),
    (None, ["train"], ["'train'"]),
    (None, ["backbone=nosuch"], ["backbone"]),
    (None, ["--config", "{t}/missing.yaml"], ["{t}/missing.yaml"]),
    ("train: [1, 2\n", ["--config", "{t}/run.yaml"], ["{t}/run.yaml"]),
    ("lora: {rank: many}\n", ["--config", "{t}/run.yaml"], ["{t}/run.yaml", "lora.rank"]),
    (None, ["data.benchmark={t}/nodata"], ["{t}/nodata"]),
    (None, ["data.tasks=RS,Nope", "data.benchmark={t}/root"], ["Nope"]),
])
def test_run_and_sweep(tmp_path, command, setup, argv, names):
    if setup is not None:
        _write(tmp_path / "run.yaml", setup)
    (tmp_path / "root").mkdir()
    _write(tmp_path / "root" / "mllmcl.json", json.dumps({"setting": "dcl"}))
    out = ["--out", "{t}/out"]
    line = _check(tmp_path, [command, *out, *argv], names[:1])
    assert all(n.format(t=tmp_path) in line for n in names)
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------- real process

def _mllmcl(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    src = Path(__file__).resolve().parents[1] / "src"
    environment = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
                   "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "mllmcl", *args], capture_output=True, text=True, env=environment,
                          timeout=120)


@pytest.mark.slow
def test_process_ask_with_a_corrupt_adapter(micro_checkpoint, tmp_path):
    """The issue's case, as a shell sees it: status 2 and one stderr line, no warning or progress bar above."""
    adapter = _adapter(micro_checkpoint, tmp_path / "adapter",
                       lambda f: _write(f / "adapter_model.safetensors", b"\xff" * 16 + os.urandom(64)))
    image = _png(tmp_path / "red.png")
    done = _mllmcl("ask", "What?", "--image", str(image), "--adapter", str(adapter), "--backbone",
                   f"hf:{micro_checkpoint / 'model'}")
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [done.stderr.strip()] and done.stderr.startswith(
        f"mllmcl: error: {adapter / 'adapter_model.safetensors'}: not a readable safetensors file"), done.stderr
    assert done.stdout == ""


@pytest.mark.slow
def test_process_debug_shows_the_traceback(tmp_path):
    missing = tmp_path / "m.json"
    plain = _mllmcl("metrics", str(missing))
    assert plain.returncode == 2 and plain.stderr == f"mllmcl: error: {missing}: no such file\n"
    for done in (_mllmcl("--debug", "metrics", str(missing)), _mllmcl("metrics", str(missing), "--debug"),
                 _mllmcl("metrics", str(missing), env={"MLLMCL_DEBUG": "1"})):
        assert done.returncode == 1 and "Traceback (most recent call last)" in done.stderr
        assert done.stderr.rstrip().endswith(f"mllmcl.core.errors.UserError: {missing}: no such file")


def test_internal_errors_are_one_line_and_exit_1(monkeypatch, tmp_path):
    """A bug (any exception that is not a UserError) is one line too, with the way to see the traceback."""
    import mllmcl.cli.report as report_commands

    monkeypatch.setattr(report_commands, "metrics_from_file", lambda path: {}["boom"])
    outcome = cli(["metrics", tmp_path / "m.json"])
    assert outcome.code == 1
    assert outcome.err == "mllmcl: error: internal error: KeyError: 'boom' (rerun with --debug for the traceback)\n"
    monkeypatch.setenv("MLLMCL_DEBUG", "1")
    with pytest.raises(KeyError):
        cli(["metrics", tmp_path / "m.json"])
