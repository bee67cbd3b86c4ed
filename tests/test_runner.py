"""The continual-learning runner on the embedded tiny backbone and a two-task toy benchmark: every method
runs end to end, results.json holds what docs/results.md promises, an interrupted run resumes to identical
results, routers only choose seen experts, and — trained for real — seq-LoRA forgets while MR-LoRA does not."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mllmcl.cl.config import load_config
from mllmcl.cli.main import main
from mllmcl.core.errors import UserError
from mllmcl.data import load_benchmark
from mllmcl.eval.results import routing_stage
from mllmcl.run.protocol import run
from toy_cl import write_toy_benchmark

ALL_METHODS = ["zero-shot", "seq-lora", "replay", "joint", "mr-lora", "oracle", "mr-lora[mllm]"]
# jobs=1: these tests watch (and patch) what runs in this process; tests/test_jobs.py runs the workers
QUICK = {"train": {"epochs": 1.0, "batch_size": 16}, "router": {"k": 8, "epochs": 2.0}, "replay": {"k": 8},
         "eval": {"batch_size": 16}, "jobs": 1}


def config_for(root: Path, methods, **extra):
    values = {"setting": "toy", "data": {"benchmark": str(root)}, "methods": list(methods), **QUICK}
    for key, value in extra.items():
        values[key] = {**values.get(key, {}), **value} if isinstance(value, dict) else value
    return load_config(None, values)


def quiet(_: str) -> None:
    pass


@pytest.mark.slow
def test_every_method_runs_and_results_follow_the_documented_schema(toy, tmp_path):
    out = tmp_path / "run"
    results = run(config_for(toy, ALL_METHODS), out, log=quiet, progress=False).to_json()
    assert results == json.loads((out / "results.json").read_text())
    assert results["tasks"] == ["Colors", "Codes"] and len(results["zero_shot"]) == 2
    assert set(results["methods"]) == set(ALL_METHODS)
    for name, entry in results["methods"].items():
        assert entry["steps"] == 2 and len(entry["final"]) == 2, name
        assert all(0 <= a <= 100 for a in entry["final"])
        assert entry["zero_shot"] == results["zero_shot"]
        assert set(entry["metrics"]) == {"MFT", "MFN", "MAA", "BWT", "Forgetting", "FWT"}
        if entry["sequential"]:
            assert len(entry["matrix"]) == 2 and entry["final"] == entry["matrix"][-1]
            assert entry["metrics"]["BWT"] == pytest.approx(entry["matrix"][1][0] - entry["matrix"][0][0], abs=1e-6)
        else:
            assert entry["matrix"] is None and entry["metrics"]["BWT"] is None
    assert results["methods"]["zero-shot"]["final"] == results["zero_shot"]
    for name in ("seq-lora", "mr-lora", "mr-lora[mllm]"):
        assert results["methods"][name]["sequential"]
    for name in ("zero-shot", "joint", "oracle"):
        assert not results["methods"][name]["sequential"]
    routing = results["methods"]["mr-lora"]["routing"]
    assert routing["router"] == "prototype" and len(routing["stages"]) == 2
    assert sum(map(sum, routing["confusion"])) == 16  # every test sample of both tasks, at the final stage
    assert results["methods"]["mr-lora[mllm]"]["routing"]["router"] == "mllm"
    # the oracle is the mr-lora experts with the true task: its final row is what a perfect router gives
    assert results["run"]["finished"] is not None
    # files next to the results
    assert (out / "config.yaml").is_file()
    lines = (out / "predictions" / "mr-lora" / "step2" / "Colors.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    assert len(lines) == 8 and {"question_id", "task", "prompt", "text", "answer", "score", "expert"} <= set(first)
    assert (out / "predictions" / "zero-shot" / "step0" / "Codes.jsonl").is_file()
    assert (out / "predictions" / "oracle" / "final" / "Codes.jsonl").is_file()
    assert (out / "experts" / "expert_Colors" / "adapter_config.json").is_file()


@pytest.mark.slow
def test_an_interrupted_run_resumes_to_identical_results(toy, tmp_path, monkeypatch):
    methods = ["seq-lora", "mr-lora", "oracle"]
    reference = run(config_for(toy, methods), tmp_path / "whole", log=quiet, progress=False).to_json()

    from mllmcl.cl.methods.mr_lora import MRLoRA

    real_learn = MRLoRA.learn
    calls = []

    def killed_at_the_second_task(self, task):
        calls.append(task.name)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_learn(self, task)

    monkeypatch.setattr(MRLoRA, "learn", killed_at_the_second_task)
    out = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        run(config_for(toy, methods), out, log=quiet, progress=False)
    partial = json.loads((out / "results.json").read_text())
    assert partial["methods"]["seq-lora"]["final"] is not None
    assert partial["methods"]["mr-lora"]["steps"] == 1 and partial["methods"]["mr-lora"]["final"] is None
    monkeypatch.setattr(MRLoRA, "learn", real_learn)
    log = []
    resumed = run(config_for(toy, methods), out, log=log.append, progress=False).to_json()
    assert any("resumed after step 1/2" in line for line in log)
    assert any("[seq-lora] finished earlier" in line for line in log)
    for name in methods:
        for key in ("matrix", "final", "metrics"):
            assert resumed["methods"][name][key] == reference["methods"][name][key], (name, key)
    assert resumed["methods"]["mr-lora"]["routing"]["stages"] == reference["methods"]["mr-lora"]["routing"]["stages"]
    for step in ("step1", "step2"):
        a = (tmp_path / "whole" / "predictions" / "mr-lora" / step / "Codes.jsonl").read_text()
        assert a == (out / "predictions" / "mr-lora" / step / "Codes.jsonl").read_text()


@pytest.mark.slow
def test_a_run_folder_refuses_another_configuration(toy, tmp_path):
    out = tmp_path / "run"
    run(config_for(toy, ["zero-shot"]), out, log=quiet, progress=False)
    with pytest.raises(UserError, match="another configuration.*train"):
        run(config_for(toy, ["zero-shot"], train={"epochs": 3.0}), out, log=quiet, progress=False)
    # adding a method to a finished run is allowed and keeps what was there
    results = run(config_for(toy, ["zero-shot", "seq-lora"]), out, log=quiet, progress=False).to_json()
    assert set(results["methods"]) == {"zero-shot", "seq-lora"}


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["mllm", "prototype", "oracle"])
def test_routers_only_choose_fitted_experts_and_restore_their_state(toy, tmp_path, kind):
    from mllmcl.cl.context import Context
    from mllmcl.cl.routing.build import build_router
    from mllmcl.cl.routing.router import expert_of
    from mllmcl.models.load import load_backbone

    bench = load_benchmark(toy)
    ctx = Context(load_backbone("tiny"), bench, config_for(toy, ["mr-lora"]), tmp_path)
    experts = [expert_of(ctx, task, kind) for task in bench.tasks]
    router = build_router(kind, ctx)
    samples = [s.query for task in bench.tasks for s in task.test]  # half from the task without an expert yet
    router.fit(experts[:1])
    assert router.route(samples).experts == [0] * len(samples)
    router.fit(experts)
    routing = router.route(samples)
    assert len(routing.experts) == len(samples) and set(routing.experts) <= {0, 1}
    assert all(0.0 <= c <= 1.0 for c in routing.confidence)
    if kind == "mllm":
        assert router.scores(samples).shape == (len(samples), 2)
        assert "colours" in router.prompt("What is this?")  # the expert's own description
        # one scoring pass picks the letter greedy generation would write, wherever it writes a valid one
        from mllmcl.cl.routing.mllm import ADAPTER
        from mllmcl.data.tasks import without_rule_suffix
        from mllmcl.engine.generate import generate

        prompts = [router.prompt(without_rule_suffix(q.question)) for q in samples]
        written = generate(ctx.backbone, [q.image for q in samples], prompts, adapters=[ADAPTER] * len(samples),
                           max_new_tokens=4)
        letters = router.letters()
        valid = [(text[0], letters[k]) for text, k in zip(written, routing.experts) if text[:1] in letters]
        assert len(valid) >= len(samples) // 2 and all(w == s for w, s in valid)
    # the saved state routes exactly as the fitted router, without refitting
    router.save(tmp_path / "state")
    restored = build_router(kind, ctx)
    assert restored.load(tmp_path / "state")
    assert restored.route(samples) == routing
    assert not build_router(kind, ctx).load(tmp_path / "empty")


def test_routing_stage_counts_only_seen_tasks():
    stage = routing_stage(["A", "B", "C"], ["A", "B"], [["A", "A", "B"], ["B", "B"], ["B", "A"]])
    assert stage.accuracy == pytest.approx(100 * 4 / 5)
    assert stage.per_task == {"A": pytest.approx(200 / 3), "B": 100.0, "C": None}
    assert stage.confusion == [[2, 1, 0], [0, 2, 0], [1, 1, 0]]


@pytest.mark.slow
def test_seq_lora_forgets_and_mr_lora_does_not(tmp_path):
    """Real training: Codes overwrites what one shared adapter learned on Colors; experts keep it. Both tasks
    ask the same question, so only the image tells them apart: the MLLM router reads it."""
    root = write_toy_benchmark(tmp_path / "toy", train=128, test=24)
    config = config_for(root, ["seq-lora", "mr-lora"], train={"epochs": 2.0},
                        router={"kind": "mllm", "k": 16, "epochs": 8.0, "batch_size": 4})
    results = run(config, tmp_path / "run", log=quiet, progress=False).to_json()
    seq, mr = results["methods"]["seq-lora"], results["methods"]["mr-lora"]
    assert seq["matrix"][0][0] >= 80 and mr["matrix"][0][0] >= 80  # Colors is learned
    assert seq["matrix"][1][0] <= seq["matrix"][0][0] - 50  # ... and forgotten by seq-LoRA
    assert seq["metrics"]["BWT"] <= -50
    assert mr["metrics"]["BWT"] >= -10 and mr["routing"]["accuracy"] >= 85


@pytest.mark.slow
def test_cli_run_prints_the_table_and_writes_the_report(toy, tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(["run", "--setting", "toy", "--methods", "zero-shot,seq-lora", "--out", str(out), "--no-progress",
                 f"data.benchmark={toy}", "train.epochs=1", "train.batch_size=16"])
    printed = capsys.readouterr().out
    assert code == 0
    assert "MFN" in printed and "seq-lora" in printed and "BWT" in printed
    assert (out / "report.md").is_file() and (out / "heatmaps").is_dir()
    assert main(["run", "--out", str(tmp_path / "x"), "train.nope=1"]) == 2
    assert "train.nope" in capsys.readouterr().err
    matrix = tmp_path / "m.json"
    matrix.write_text(json.dumps({"matrix": [[50, 10], [40, 60]], "zero_shot": [5, 6]}))
    assert main(["metrics", str(matrix)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["BWT"] == -10 and printed["MFN"] == 50 and printed["FWT"] == 4


def test_a_test_row_without_answer_is_refused_before_any_training(tmp_path):
    root = write_toy_benchmark(tmp_path / "toy", train=8, test=4)
    path = root / "Codes" / "test.json"
    rows = json.loads(path.read_text())
    del rows[2]["answer"]
    path.write_text(json.dumps(rows))
    with pytest.raises(UserError, match=r"Codes"):
        run(config_for(root, ["seq-lora"]), tmp_path / "run", log=quiet, progress=False)
    assert not (tmp_path / "run" / "results.json").exists()


@pytest.mark.slow
def test_the_same_command_in_two_fresh_folders_gives_identical_results(toy, tmp_path):
    """Reproducibility: two separate processes, two fresh folders, one command: the same accuracies, to the
    last digit (training included)."""
    import os
    import subprocess
    import sys

    def command(out):
        return subprocess.run([sys.executable, "-m", "mllmcl", "run", "--out", str(out), "--no-progress",
                               "--methods", "zero-shot,seq-lora,mr-lora", "setting=toy", f"data.benchmark={toy}",
                               "train.epochs=1", "train.batch_size=16", "router.k=8", "eval.batch_size=16"],
                              env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=600)
    for out in ("a", "b"):
        assert command(tmp_path / out).returncode == 0
    a, b = (json.loads((tmp_path / out / "results.json").read_text()) for out in ("a", "b"))
    assert a["zero_shot"] == b["zero_shot"]
    for name in ("seq-lora", "mr-lora"):
        for key in ("matrix", "final", "metrics", "format_valid"):
            assert a["methods"][name][key] == b["methods"][name][key], (name, key)
    for step in ("step1", "step2"):
        path = Path("predictions") / "seq-lora" / step / "Codes.jsonl"
        assert (tmp_path / "a" / path).read_text() == (tmp_path / "b" / path).read_text()


@pytest.mark.slow
def test_a_run_that_failed_before_its_first_step_does_not_block_the_corrected_one(toy, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    # as an earlier failed run would leave it: a config that differs, no finished step
    (out / "config.yaml").write_text("backbone: tiny\nsetting: toy\ntrain: {epochs: 9}\n")
    results = run(config_for(toy, ["zero-shot"]), out, log=quiet, progress=False).to_json()
    assert results["zero_shot"] is not None
    # a folder with a finished step keeps its protection
    with pytest.raises(UserError, match="another configuration"):
        run(config_for(toy, ["zero-shot"], train={"epochs": 3.0}), out, log=quiet, progress=False)
    # through the CLI: a bad backbone fails at load and writes nothing; the corrected command then runs
    fresh = tmp_path / "fresh"
    assert main(["run", "--out", str(fresh), "backbone=nosuch", "setting=toy", f"data.benchmark={toy}"]) == 2
    assert "backbone" in capsys.readouterr().err and not fresh.exists()


@pytest.mark.slow
def test_a_folder_from_before_a_method_or_setting_existed_still_resumes(toy, tmp_path):
    import yaml

    out = tmp_path / "run"
    reference = run(config_for(toy, ["zero-shot", "seq-lora"]), out, log=quiet, progress=False).to_json()
    saved = yaml.safe_load((out / "config.yaml").read_text())
    for block in ("ewc", "lwf", "o-lora", "moelora"):  # written before these methods existed
        saved.pop(block)
    saved["router"].pop("prompt")  # … and before this router setting existed
    saved["sefe"]["retired"] = 1  # … or by a version whose unstarted method had a key that is gone now
    (out / "config.yaml").write_text(yaml.safe_dump(saved))
    log = []
    results = run(config_for(toy, ["zero-shot", "seq-lora", "ewc"], ewc={"lambda": 10.0}), out, log=log.append,
                  progress=False).to_json()
    assert any("[seq-lora] finished earlier" in line for line in log)
    assert results["methods"]["seq-lora"]["final"] == reference["methods"]["seq-lora"]["final"]
    assert results["methods"]["ewc"]["final"] is not None


def test_a_router_buffer_larger_than_the_router_file_is_made_up_from_training_rows(tmp_path):
    """`router.k` above the rows the benchmark's router file has: the file's rows first, then training rows
    (drawn with the data seed) up to k — never silently fewer than asked."""
    from mllmcl.cl.context import Context
    from mllmcl.cl.routing.router import router_buffer
    from mllmcl.data.synth.write import SynthSpec, write_synth

    root = write_synth(tmp_path / "d", SynthSpec(train=6, test=2, val=0, unseen=0, router_k=1, replay_k=1),
                       progress=False)
    bench = load_benchmark(root, tasks=["RS"])
    task = bench.tasks[0]
    from_file = [s for s in bench.router if s.task == "RS"]
    assert len(from_file) == 1

    def buffer(k: int, seed: int = 0):
        config = load_config(None, {"data": {"benchmark": str(root), "seed": seed}, "router": {"k": k}})
        return router_buffer(Context(None, bench, config, tmp_path / "ctx"), task, "mllm")
    assert buffer(1) == tuple(from_file)
    four = buffer(4)
    assert len(four) == 4 and four[0] == from_file[0]
    assert all(s in task.train for s in four[1:])
    assert buffer(4) == four                  # seeded
    assert len(buffer(50)) == 1 + len(task.train)  # all there is


@pytest.mark.slow
def test_an_expert_answers_each_test_sample_once_per_run(toy, tmp_path, monkeypatch):
    """A trained expert never changes, so a run asks it once per test sample: mr-lora's later steps and the
    oracle reuse the answers (routing/answer.py's memo). Each expert is trained once, every other method
    trains its own adapter on every task."""
    import mllmcl.cl.context
    import mllmcl.cl.routing.answer

    trained, generated = [], []
    real_train, real_generate = mllmcl.cl.context.train, mllmcl.cl.routing.answer.generate_detailed

    def counting_train(backbone, rows, name, config, **kwargs):
        trained.append(name)
        return real_train(backbone, rows, name, config, **kwargs)

    def counting_generate(backbone, images, questions, adapters=None, **kwargs):
        generated.extend(zip(adapters, images, questions))
        return real_generate(backbone, images, questions, adapters=adapters, **kwargs)

    monkeypatch.setattr(mllmcl.cl.context, "train", counting_train)
    monkeypatch.setattr(mllmcl.cl.routing.answer, "generate_detailed", counting_generate)
    results = run(config_for(toy, ["seq-lora", "mr-lora", "oracle"]), tmp_path / "run", log=quiet, progress=False).to_json()
    assert sorted(trained) == ["expert_Codes", "expert_Colors", "seq-lora", "seq-lora"], trained
    assert len(generated) == len(set(generated)) > 0  # no expert answered a sample twice
    tests = sum(len(t.test) for t in load_benchmark(toy).tasks)
    assert tests <= len(generated) <= 2 * tests  # at most once per expert and test sample
    assert results["methods"]["oracle"]["final"] is not None
