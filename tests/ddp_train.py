"""Run by test_distributed.py under `torchrun --nproc_per_node 2`: the engine trains one adapter, unchanged,
and each rank writes a digest of its adapter weights and what accelerate saw."""
import hashlib
import json
import os
import sys

os.environ["HF_HUB_OFFLINE"] = "1"
sys.path.insert(0, os.path.dirname(__file__))

import torch  # noqa: E402

from conftest import TEXTS, colour_examples  # noqa: E402
from mllmcl.engine.adapters import add_adapter  # noqa: E402
from mllmcl.engine.settings import TrainConfig
from mllmcl.engine.train import make_accelerator, train  # noqa: E402
from mllmcl.models.backbone import Backbone  # noqa: E402
from mllmcl.models.template import ChatTemplate  # noqa: E402
from mllmcl.models.tiny import TinyConfig, build_tiny  # noqa: E402

out = sys.argv[1]
rank = int(os.environ["RANK"])
torch.manual_seed(1234 + rank)  # different per rank on purpose: DDP must broadcast rank 0's initial weights
model, processor = build_tiny(TEXTS, TinyConfig.micro(), seed=0)
backbone = Backbone("micro", model, processor, ChatTemplate())
torch.manual_seed(1234 + rank)
add_adapter(backbone, "t1")
initial = {k: v.clone() for k, v in backbone.model.state_dict().items() if ".t1" in k}
stats = train(backbone, colour_examples(64), "t1", TrainConfig(epochs=2, batch_size=8, lr=5e-3, progress=False))
state = {k: v for k, v in backbone.model.state_dict().items() if ".t1" in k}
digest = hashlib.sha256(b"".join(state[k].numpy().tobytes() for k in sorted(state))).hexdigest()
accelerator = make_accelerator()
with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
    json.dump({"digest": digest, "num_processes": accelerator.num_processes,
               "distributed_type": str(accelerator.distributed_type), "steps": stats.steps,
               "samples": stats.samples,
               "changed": sum(not torch.equal(initial[k], state[k]) for k in state)}, f)
