"""Task-block LoRA (engine/blocks.py) and rule-based answer styles (data/styles.py): the block hook computes
exactly Σ_k w_k B_k A_k x (mixed) and (Σ B_k)(Σ A_k) x (fused) on a real peft layer, one weight row per
sample; a block adapter saves and loads; ASD rewrites a row into another style its instruction asks for."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mllmcl.data.answer_formats import format_problem
from mllmcl.data.mllm_cl import Sample
from mllmcl.data.styles import diversify
from mllmcl.data.tasks import LETTER_INSTRUCTION, SHORT_INSTRUCTION
from mllmcl.engine import blocks
from mllmcl.engine.adapters import add_adapter, load_adapter, save_adapter
from mllmcl.engine.settings import BlockLoraRecipe

RECIPE = BlockLoraRecipe(rank=6, alpha=12.0, blocks=3, projector=False, lm_head=False, vision=False)


def _layer(micro):
    add_adapter(micro, "tb", RECIPE)
    key, _ = next(iter(blocks.layers(micro, "tb").items()))
    module = micro.model.get_submodule(key)
    torch.manual_seed(0)
    with torch.no_grad():
        module.lora_B["tb"].weight.normal_()
    micro.model.set_adapter("tb")
    return module


def test_mixed_blocks_add_each_blocks_update_by_its_weight(micro):
    module = _layer(micro)
    a, b, scale = module.lora_A["tb"].weight, module.lora_B["tb"].weight, module.scaling["tb"]
    x = torch.randn(2, 5, a.shape[1])
    weights = torch.tensor([[1.0, 0.0, 0.0], [0.2, 0.5, 0.3]])
    with torch.no_grad(), blocks.route(micro, "tb", weights):
        got = module(x) - module.base_layer(x)
    for row in range(2):
        want = sum(weights[row, k] * (x[row] @ a[2 * k:2 * k + 2].T @ b[:, 2 * k:2 * k + 2].T) for k in range(3))
        assert torch.allclose(got[row], want * scale, atol=1e-5)


def test_fused_layers_multiply_the_sums_of_the_learned_blocks(micro):
    module = _layer(micro)
    key = next(iter(blocks.layers(micro, "tb")))
    a, b, scale = module.lora_A["tb"].weight, module.lora_B["tb"].weight, module.scaling["tb"]
    x = torch.randn(1, 4, a.shape[1])
    learned = torch.tensor([1.0, 1.0, 0.0])
    with torch.no_grad(), blocks.route(micro, "tb", torch.ones(3) / 3, {key}, learned):
        got = module(x) - module.base_layer(x)
    sum_a, sum_b = a[0:2] + a[2:4], b[:, 0:2] + b[:, 2:4]   # blocks 0 and 1, cross terms included
    assert torch.allclose(got, x @ sum_a.T @ sum_b.T * scale, atol=1e-5)


def test_a_block_adapter_refuses_to_run_unrouted_and_saves_and_loads(micro, tmp_path):
    module = _layer(micro)
    x = torch.randn(1, 3, module.lora_A["tb"].weight.shape[1])
    with pytest.raises(RuntimeError, match="route"):
        module(x)
    with torch.no_grad(), blocks.route(micro, "tb", torch.tensor([0.0, 1.0, 0.0])):
        before = module(x)
    save_adapter(micro, "tb", tmp_path)
    load_adapter(micro, "again", tmp_path / "tb")
    micro.model.set_adapter("again")
    with torch.no_grad(), blocks.route(micro, "again", torch.tensor([0.0, 1.0, 0.0])):
        assert torch.allclose(module(x), before, atol=1e-6)


def _sample(i: int, question: str, answer: str) -> Sample:
    return Sample(f"r{i}", "T", Path("x.png"), question, answer, ((question, answer),))


def test_answer_style_diversification_rewrites_a_share_into_styles_their_instructions_ask_for():
    brief = [_sample(i, f"What is shown? {SHORT_INSTRUCTION}", w) for i, w in enumerate(["cat", "dog", "bus", "car"])]
    choice = [_sample(9, f"Which one?\nA. red\nB. blue\n{LETTER_INSTRUCTION}", "B")]
    rows = brief * 5 + choice * 5
    out = diversify(rows, 0.5, seed=0)
    changed = [(old, new) for old, new in zip(rows, out) if new != old]
    assert len(out) == len(rows) and len(changed) == len(rows) // 2
    for old, new in changed:
        assert new.turns == ((new.question, new.answer),)
        assert format_problem({}, new.question, new.answer) is None, (new.question, new.answer)
        if old.answer == "B":
            assert new.answer == "blue" and "A. red" not in new.question
    assert diversify(rows, 0.0, seed=0) == rows
    assert diversify(rows, 0.5, seed=0) == out  # seeded
