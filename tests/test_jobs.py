"""`jobs` > 1: a run's methods and MR-LoRA's experts in parallel worker processes (mllmcl/jobs.py). The parts
give exactly the results of one process; the parent alone writes results.json; an error in a part stops the
run with that error; a killed run's workers stop with it, and the run resumes."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest

from mllmcl.cl.config import load_config
from mllmcl.cl.methods.catalog import MethodCard
from mllmcl.core.errors import UserError
from mllmcl.eval.results import MethodResults, Results
from mllmcl.run.jobs import plan
from mllmcl.run.protocol import run
from toy_cl import write_toy_benchmark

METHODS = ["seq-lora", "mr-lora", "oracle"]
# threads=1 in every process: the promise is the results of one process at the same thread count (on some
# CPUs the thread count moves the arithmetic's last bits; docs/results.md, "Determinism")
QUICK = ["setting=toy", "threads=1", "train.epochs=1", "train.batch_size=16", "eval.batch_size=16", "router.k=8"]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def quiet(_: str) -> None:
    pass


def config_for(root: Path, *extra: str):
    return load_config(None, [f"data.benchmark={root}", f"methods={','.join(METHODS)}", *QUICK, *extra])


@pytest.fixture(scope="module")
def one_process(toy, tmp_path_factory) -> Path:
    """The reference: the same run with every part in this process, one after the other."""
    import torch

    out, threads = tmp_path_factory.mktemp("one") / "run", torch.get_num_threads()
    try:
        run(config_for(toy, "jobs=1"), out, log=quiet, progress=False)
    finally:  # `threads` set this process's thread count; the rest of the suite keeps its own
        torch.set_num_threads(threads)
    return out


def _plan(tmp_path, methods, finished=(), saved=()):
    tasks = [SimpleNamespace(name=n) for n in ("A", "B", "C")]
    ctx = SimpleNamespace(benchmark=SimpleNamespace(tasks=tasks), experts=tmp_path / "experts")
    for name in saved:
        (ctx.experts / f"expert_{name}").mkdir(parents=True)
        (ctx.experts / f"expert_{name}" / "adapter_config.json").write_text("{}")
    results = Results(tasks=["A", "B", "C"], methods={
        m.name: MethodResults(final=[1.0] if m.name in finished else None) for m in methods})
    return plan(ctx, methods, results)


def method(name, sequential=True, learns=True, uses_experts=False):
    return SimpleNamespace(name=name, card=MethodCard(sequential=sequential, learns=learns, uses_experts=uses_experts))


def test_the_plan_runs_sequential_methods_first_and_the_expert_methods_after_their_experts(tmp_path):
    methods = [method("zero-shot", False, learns=False), method("joint", sequential=False), method("seq-lora"),
               method("mr-lora", uses_experts=True), method("oracle", False, uses_experts=True), method("ewc")]
    parts = _plan(tmp_path, methods).parts
    assert [p.name for p in parts] == ["method seq-lora", "method ewc", "method joint", "expert A", "expert B",
                                       "expert C", "expert methods mr-lora, oracle"]
    assert parts[-1].methods == ("mr-lora", "oracle") and parts[-1].after == ("expert A", "expert B", "expert C")
    assert _plan(tmp_path / "x", methods).width == 6


def test_the_plan_leaves_out_finished_methods_and_saved_experts(tmp_path):
    methods = [method("seq-lora"), method("mr-lora", uses_experts=True)]
    parts = _plan(tmp_path, methods, finished=("seq-lora",), saved=("A", "C")).parts
    assert [p.name for p in parts] == ["expert B", "expert methods mr-lora"]
    assert parts[-1].after == ("expert B",)
    assert _plan(tmp_path / "y", methods, finished=("seq-lora", "mr-lora")).parts == ()


@pytest.mark.slow
def test_parallel_parts_give_exactly_the_results_of_one_process(toy, one_process, tmp_path):
    out = tmp_path / "run"
    lines = []
    results = run(config_for(toy, "jobs=2"), out, log=lines.append, progress=False).to_json()
    assert any(line.startswith("jobs: 4 parts in 2 processes") for line in lines), lines
    reference = json.loads((one_process / "results.json").read_text())
    assert results == json.loads((out / "results.json").read_text())  # written by this process, complete
    assert results["zero_shot"] == reference["zero_shot"]
    assert list(results["methods"]) == METHODS  # the configuration's order, whatever finished first
    for name in METHODS:
        mine, theirs = results["methods"][name], reference["methods"][name]
        for key in ("steps", "matrix", "final", "format_valid", "final_format_valid", "metrics", "routing"):
            assert mine.get(key) == theirs.get(key), (name, key)
    for path in sorted((one_process / "predictions").rglob("*.jsonl")):  # every answer, to the byte
        assert (out / path.relative_to(one_process)).read_text() == path.read_text(), path
    # each method keeps only its last step's state; the experts were trained once each, by their own parts
    assert sorted(p.name for p in (out / "state" / "seq-lora").iterdir()) == ["step2"]
    assert sorted(p.name for p in (out / "experts").iterdir()) == ["expert_Codes", "expert_Colors"]
    assert results["run"]["finished"] is not None and results["run"]["jobs"]["processes"] == 2


@pytest.mark.slow
def test_an_error_in_a_part_stops_the_run_with_that_error(toy, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for item in toy.iterdir():  # the toy data, with one training question far too long for the backbone
        (broken / item.name).symlink_to(item)
    (broken / "Codes").unlink()
    (broken / "Codes").mkdir()
    for item in (toy / "Codes").iterdir():
        (broken / "Codes" / item.name).symlink_to(item)
    rows = json.loads((toy / "Codes" / "train.json").read_text())
    rows[3]["conversations"][0]["value"] = "<image>\n" + "What is this colour, really? " * 80
    (broken / "Codes" / "train.json").unlink()
    (broken / "Codes" / "train.json").write_text(json.dumps(rows))
    out = tmp_path / "run"
    with pytest.raises(UserError, match="more than backbone tiny's maximum"):
        run(config_for(broken, "jobs=2"), out, log=quiet, progress=False)
    partial = json.loads((out / "results.json").read_text())  # what was recorded stays readable
    assert partial["zero_shot"] is not None and partial["run"]["finished"] is None


def _processes_with(marker: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and marker.encode() in (proc / "environ").read_bytes():
                found.append(int(proc.name))
        except OSError:
            pass
    return found


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the workers through /proc")
def test_a_killed_parallel_run_takes_its_workers_with_it_and_resumes_to_the_same_results(toy, one_process,
                                                                                          tmp_path):
    out, marker = tmp_path / "run", f"MLLMCL_TEST_RUN={uuid.uuid4().hex}"
    command = [sys.executable, "-m", "mllmcl", "run", "--out", str(out), "--no-progress", f"data.benchmark={toy}",
               f"methods={','.join(METHODS)}", *QUICK, "jobs=2"]
    env = {**ENV, marker.split("=")[0]: marker.split("=")[1]}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline:  # kill the parent alone once a step is recorded
        results = out / "results.json"
        if results.is_file() and json.loads(results.read_text())["methods"].get("seq-lora", {}).get("steps"):
            break
        time.sleep(0.1)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    partial = json.loads((out / "results.json").read_text())
    assert partial["run"]["finished"] is None and partial["methods"]["seq-lora"]["final"] is None
    deadline = time.time() + 30  # the fork server ends, then each worker notices within a second of its next poll
    while _processes_with(marker) and time.time() < deadline:
        time.sleep(0.2)
    assert _processes_with(marker) == []  # no worker goes on training for a dead run
    result = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "[seq-lora] resumed after step 1/2" in result.stdout
    resumed = json.loads((out / "results.json").read_text())
    reference = json.loads((one_process / "results.json").read_text())
    for name in METHODS:
        assert resumed["methods"][name]["final"] == reference["methods"][name]["final"], name
        assert resumed["methods"][name].get("matrix") == reference["methods"][name].get("matrix"), name


def _alive_fd_after_release() -> tuple[bool, bool]:
    """In a fork-server child: whether it held the run's end of the "alive" pipe, and whether it still does."""
    from multiprocessing import forkserver

    from mllmcl.run import jobs

    held = forkserver._forkserver._forkserver_alive_fd is not None
    jobs._release_fork_server()
    return held, forkserver._forkserver._forkserver_alive_fd is not None


@pytest.mark.slow
def test_a_worker_lets_go_of_the_fork_servers_alive_pipe():
    """Every fork-server child inherits the run's end of the pipe whose closing tells the fork server that the
    run died; a worker that kept it would keep the server (and so itself) alive after a `kill` of the run."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    if "forkserver" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork server on this platform")
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("forkserver")) as pool:
        held, still = pool.submit(_alive_fd_after_release).result()
    assert held and not still
