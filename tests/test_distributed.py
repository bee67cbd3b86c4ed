"""The engine's training runs unchanged under torchrun with 2 CPU processes (gloo) and both ranks end with
identical adapter weights."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_two_process_ddp_ends_with_identical_adapters(tmp_path):
    script = Path(__file__).parent / "ddp_train.py"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
         str(tmp_path)], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for rank in ranks:
        assert rank["num_processes"] == 2 and "MULTI_CPU" in rank["distributed_type"]
        assert rank["changed"] > 0
        # 64 samples, batch 8 per process, 2 processes -> 4 steps per epoch, 2 epochs
        assert rank["steps"] == 8 and rank["samples"] == 128
    assert ranks[0]["digest"] == ranks[1]["digest"]
