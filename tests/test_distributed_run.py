"""`mllmcl run` under `torchrun --nproc_per_node 2` on CPU (gloo): the main process alone writes; evaluation
is sharded by whole batches and gathered, so a fixed model's answers equal one process's exactly; training is
data-parallel; a killed run resumes; an error stops every process."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mllmcl.cl.config import load_config
from mllmcl.run.protocol import run
from toy_cl import write_toy_benchmark

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
COMMON = ["setting=toy", "threads=1", "train.epochs=2", "eval.batch_size=4", "router.k=8", "replay.k=8",
          "lora.rank=8", "lora.alpha=16"]


def torchrun(out: Path, root: Path, *extra: str, background: bool = False, batch: int = 8):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "mllmcl",
               "run", "--out", str(out), "--no-progress", f"data.benchmark={root}", f"train.batch_size={batch}",
               *COMMON, *extra]
    if background:
        return subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
    return subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=600)


def kill_every_process_of(out: Path) -> None:
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and str(out).encode() in (proc / "cmdline").read_bytes():
                os.kill(int(proc.name), signal.SIGKILL)
        except (OSError, ProcessLookupError):
            pass


def single(out: Path, root: Path, *extra: str, batch: int = 16) -> dict:
    config = load_config(None, [f"data.benchmark={root}", f"train.batch_size={batch}", *COMMON, *extra])
    return run(config, out, log=lambda _: None, progress=False).to_json()


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    return write_toy_benchmark(tmp_path_factory.mktemp("toy"), train=32, test=10)


@pytest.mark.slow
def test_two_processes_answer_exactly_as_one_and_only_the_main_one_writes(toy, tmp_path):
    import torch

    threads = torch.get_num_threads()
    try:
        reference = single(tmp_path / "one", toy, "methods=zero-shot,oracle")
    finally:
        torch.set_num_threads(threads)
    # the same experts, loaded: a fixed model evaluated by two processes
    (tmp_path / "two").mkdir()
    shutil.copytree(tmp_path / "one" / "experts", tmp_path / "two" / "experts")
    result = torchrun(tmp_path / "two", toy, "methods=zero-shot,oracle,seq-lora")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.count("MFN") == 1  # the table is printed once, by the main process
    two = json.loads((tmp_path / "two" / "results.json").read_text())
    assert two["run"]["processes"] == 2 and two["tasks"] == reference["tasks"]
    assert two["zero_shot"] == reference["zero_shot"]
    assert two["methods"]["oracle"]["final"] == reference["methods"]["oracle"]["final"]
    for task in ("Colors", "Codes"):  # every sample answered once, in order, the same text as one process
        a = (tmp_path / "one" / "predictions" / "oracle" / "final" / f"{task}.jsonl").read_text()
        b = (tmp_path / "two" / "predictions" / "oracle" / "final" / f"{task}.jsonl").read_text()
        assert a == b and len(b.splitlines()) == 10
    assert not list(tmp_path.rglob(".*.tmp"))  # no half-written file left by a second writer
    seq = two["methods"]["seq-lora"]
    assert len(seq["matrix"]) == 2 and all(len(row) == 2 for row in seq["matrix"])


@pytest.mark.slow
def test_data_parallel_training_stays_within_tolerance_of_one_process(toy, tmp_path):
    """2 processes x batch 8 see the same 16 samples per optimizer step as 1 process x batch 16; what differs is
    the order of floating-point sums (the all-reduce of two half-batch means). Tolerance: 10 points (one test
    sample of 10) per task."""
    import torch

    threads = torch.get_num_threads()
    try:
        one = single(tmp_path / "one", toy, "methods=seq-lora", batch=16)
    finally:
        torch.set_num_threads(threads)
    result = torchrun(tmp_path / "two", toy, "methods=seq-lora", batch=8)
    assert result.returncode == 0, result.stdout[-3000:]
    two = json.loads((tmp_path / "two" / "results.json").read_text())
    print(f"seq-lora matrix, 1 process x batch 16: {one['methods']['seq-lora']['matrix']}; "
          f"2 processes x batch 8: {two['methods']['seq-lora']['matrix']}")  # shown with pytest -s
    for row_one, row_two in zip(one["methods"]["seq-lora"]["matrix"], two["methods"]["seq-lora"]["matrix"]):
        assert all(abs(a - b) <= 10.0 for a, b in zip(row_one, row_two)), (row_one, row_two)


@pytest.mark.slow
def test_a_killed_two_process_run_resumes(toy, tmp_path):
    out = tmp_path / "run"
    slow = ("methods=seq-lora", "train.epochs=12")
    process = torchrun(out, toy, *slow, background=True)
    deadline = time.time() + 300
    while time.time() < deadline:  # kill the whole job once the first step is recorded
        results = out / "results.json"
        if results.is_file() and json.loads(results.read_text())["methods"].get("seq-lora", {}).get("steps") == 1:
            break
        time.sleep(0.2)
    kill_every_process_of(out)  # the launcher and both workers (workers have process groups of their own)
    process.wait()
    partial = json.loads((out / "results.json").read_text())
    assert partial["methods"]["seq-lora"]["steps"] == 1 and partial["methods"]["seq-lora"]["final"] is None
    result = torchrun(out, toy, *slow)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "resumed after step 1/2" in result.stdout
    done = json.loads((out / "results.json").read_text())["methods"]["seq-lora"]
    assert done["steps"] == 2 and len(done["matrix"]) == 2


@pytest.mark.slow
def test_an_error_stops_every_process(toy, tmp_path):
    start = time.time()
    result = torchrun(tmp_path / "bad", toy, "methods=seq-lora", "data.tasks=Colors,Nope")
    assert result.returncode != 0 and "Nope" in result.stdout + result.stderr
    assert time.time() - start < 120 and not (tmp_path / "bad" / "results.json").exists()
