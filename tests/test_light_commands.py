"""The commands that only read and check — `--help`, `ls`, `run --dry-run`, `sweep --dry-run` — import no
torch (nor transformers, peft or accelerate, which import it): each runs here in a fresh Python where
importing torch fails, and must still succeed."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

NO_TORCH = """
import sys

class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "torch":
            raise ImportError(f"{name}: torch is blocked in this test")

sys.meta_path.insert(0, NoTorch())
from mllmcl.cli.main import main
code = main(sys.argv[1:])
heavy = sorted(m for m in ("transformers", "peft", "accelerate") if m in sys.modules)
sys.exit(code or (3 if heavy else 0))
"""


@pytest.mark.parametrize("argv, expected", [
    (["--help"], "usage: mllmcl"),
    (["ls"], "ewc.lambda = 5000.0"),
    (["run", "--dry-run", "data.tasks=RS,Med", "methods=seq-lora,mr-lora[mllm],ewc+replay,moelora"], "lambda: 5000.0"),
    (["sweep", "--dry-run", "--orders", "2", "--out", "unused"], "s0-o1: seed 0, order random:1"),
])
def test_light_commands_run_without_torch(argv, expected):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", NO_TORCH, *argv], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert expected in done.stdout
