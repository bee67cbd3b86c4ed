"""The paper's baselines: each mechanism does what it claims (not only that it runs), on a micro backbone;
and every registered method runs end to end through two tiny tasks (a new method is covered by default)."""
from __future__ import annotations

import pytest
import torch

from conftest import colour_examples
from mllmcl.cl.methods.catalog import METHODS
from mllmcl.cl.methods.ewc import ewc_penalty
from mllmcl.cl.methods.lwf import distillation
from mllmcl.cl.methods.o_lora import lora_a_matrices, orthogonality
from mllmcl.engine import moe
from mllmcl.engine.adapters import adapter_parameters, add_adapter, sum_adapters
from mllmcl.engine.settings import LoraRecipe, MoELoraRecipe, TrainConfig
from mllmcl.engine.teacher import AnswerLogits, answer_positions
from mllmcl.engine.train import model_inputs, squared_gradients, train

QUICK = TrainConfig(epochs=1, batch_size=8, lr=5e-3, progress=False)
SMALL = LoraRecipe(rank=4, alpha=8.0)


def test_ewc_penalty_is_zero_at_the_anchor_and_grows_away_from_it():
    torch.manual_seed(0)
    anchor = {"a": torch.randn(3, 4), "b": torch.randn(5)}
    fisher = {"a": torch.rand(3, 4), "b": torch.rand(5)}
    assert ewc_penalty({k: v.clone() for k, v in anchor.items()}, fisher, anchor, 100.0).item() == 0.0
    step = {k: torch.randn_like(v) for k, v in anchor.items()}
    one = ewc_penalty({k: anchor[k] + step[k] for k in anchor}, fisher, anchor, 100.0)
    two = ewc_penalty({k: anchor[k] + 2 * step[k] for k in anchor}, fisher, anchor, 100.0)
    assert one > 0 and two.item() == pytest.approx(4 * one.item(), rel=1e-5)  # quadratic in the distance
    assert ewc_penalty({k: anchor[k] + step[k] for k in anchor}, {k: torch.zeros_like(v) for k, v in fisher.items()},
                       anchor, 100.0) == 0  # weights without importance move freely


@pytest.mark.slow
def test_the_fisher_covers_every_trainable_weight_of_the_adapter(micro):
    add_adapter(micro, "t1", SMALL)
    train(micro, colour_examples(16), "t1", QUICK)
    fisher = squared_gradients(micro, colour_examples(16, seed=1), "t1", batch_size=8, max_batches=2, seed=0)
    params = adapter_parameters(micro, "t1")
    assert set(fisher) == set(params) and all(f.shape == params[k].shape for k, f in fisher.items())
    assert all((f >= 0).all() for f in fisher.values()) and sum(f.sum() for f in fisher.values()) > 0
    assert not any(p.requires_grad for p in params.values())  # left frozen


@pytest.mark.slow
def test_the_lwf_term_is_zero_when_student_and_teacher_agree(micro):
    logits = torch.randn(6, 11)
    assert distillation(logits, logits.clone(), 2.0).item() == pytest.approx(0.0, abs=1e-6)
    assert distillation(logits, torch.randn(6, 11), 2.0) > 0
    # the cached teacher of the current adapter reproduces the student's own answer logits exactly
    add_adapter(micro, "t1", SMALL)
    train(micro, colour_examples(16), "t1", QUICK)
    examples = colour_examples(8, seed=2)
    teacher = AnswerLogits.compute(micro, examples, "t1", batch_size=3)
    batch = micro.encode_conversations([e.image for e in examples], [[(e.question, e.answer)] for e in examples])
    batch["_index"] = torch.arange(len(examples))
    micro.model.set_adapter("t1")
    with torch.no_grad():
        student = micro.model(**model_inputs(batch)).logits[:, :-1][answer_positions(batch["labels"])]
    assert distillation(student, teacher.for_batch(batch), 2.0).item() == pytest.approx(0.0, abs=1e-5)
    top = AnswerLogits.compute(micro, examples, "t1", batch_size=8, top_k=5).for_batch(batch)
    assert torch.isfinite(top).sum(dim=1).eq(5).all()  # top-k keeps 5 logits per position


def _overlap_after_training(micro, lambda1: float) -> float:
    from mllmcl.cl.methods.o_lora import OLoRA  # noqa: F401  (the method's own loss pieces are tested directly)

    recipe = LoraRecipe(rank=4, alpha=8.0, projector=False)
    torch.manual_seed(0)
    add_adapter(micro, "first", recipe)
    train(micro, colour_examples(16), "first", QUICK)
    torch.manual_seed(1)
    add_adapter(micro, "second", recipe)
    earlier = [lora_a_matrices(adapter_parameters(micro, "first"))]
    new = lora_a_matrices(adapter_parameters(micro, "second"))
    before = orthogonality(new, earlier).item()

    def loss(model, batch):
        return model(**model_inputs(batch)).loss + lambda1 * orthogonality(new, earlier)
    train(micro, colour_examples(32, seed=3), "second", TrainConfig(epochs=2, batch_size=8, lr=5e-3, progress=False),
          loss_fn=loss, frozen_adapters=("first",))
    assert not any(p.requires_grad for p in adapter_parameters(micro, "first").values())
    return before, orthogonality(new, earlier).item()


@pytest.mark.slow
def test_o_lora_lowers_the_overlap_with_the_earlier_lora(micro):
    import copy

    plain = copy.deepcopy(micro)
    before, without = _overlap_after_training(plain, 0.0)
    _, with_loss = _overlap_after_training(micro, 1.0)
    assert with_loss < 0.5 * without and with_loss < before


@pytest.mark.slow
def test_the_sum_of_loras_answers_like_both_active(micro):
    from mllmcl.engine.generate import next_token_logits

    recipe = LoraRecipe(rank=4, alpha=8.0, projector=False)
    for name in ("t1", "t2"):
        add_adapter(micro, name, recipe)
        train(micro, colour_examples(16, seed=len(name)), name, QUICK)
    sum_adapters(micro, ["t1", "t2"], "both")
    examples = colour_examples(6, seed=9)
    images, questions = [e.image for e in examples], [e.question for e in examples]
    summed = next_token_logits(micro, images, questions, adapters=["both"] * 6)
    batch = micro.encode_prompts(images, questions)
    micro.model.base_model.set_adapter(["t1", "t2"])
    micro.model.eval()
    with torch.no_grad():
        active = micro.model(**batch).logits[:, -1]
    micro.model.set_adapter("t1")
    assert torch.allclose(summed, active, atol=1e-4)


@pytest.mark.slow
def test_a_projector_copy_moves_from_a_trained_adapter_to_a_sum(micro):
    """drop_projector keeps the LoRA and hands back the copy; a sum given that copy answers as the adapter did."""
    from mllmcl.engine.adapters import drop_projector, recipe_of
    from mllmcl.engine.generate import next_token_logits

    add_adapter(micro, "carried", LoraRecipe(rank=4, alpha=8.0, projector=True))
    train(micro, colour_examples(16, seed=3), "carried", QUICK)
    examples = colour_examples(6, seed=9)
    images, questions = [e.image for e in examples], [e.question for e in examples]
    before = next_token_logits(micro, images, questions, adapters=["carried"] * 6)
    projector = drop_projector(micro, "carried")
    assert projector and not recipe_of(micro, "carried").projector
    plain = next_token_logits(micro, images, questions, adapters=["carried"] * 6)
    sum_adapters(micro, ["carried"], "again", projector=projector)
    again = next_token_logits(micro, images, questions, adapters=["again"] * 6)
    assert torch.allclose(again, before, atol=1e-4) and not torch.allclose(plain, before, atol=1e-3)


@pytest.mark.slow
def test_moelora_gates_sum_to_one_and_every_expert_gets_gradient(micro):
    recipe = MoELoraRecipe(rank=8, alpha=16.0, experts=4)
    add_adapter(micro, "moe", recipe)
    gates = moe.gates(micro, "moe")
    assert gates and all(g.out_features == 4 for g in gates.values())
    torch.manual_seed(0)
    params = adapter_parameters(micro, "moe")
    with torch.no_grad():  # B starts at zero (no gradient reaches A); give it values as after a first step
        for key, p in params.items():
            if ".lora_B." in key:
                p.normal_(std=0.1)
            if "gates" in key:
                p.normal_(std=0.5)
    x = torch.randn(3, 7, next(iter(gates.values())).in_features)
    weights = torch.softmax(next(iter(gates.values()))(x), dim=-1)
    assert torch.allclose(weights.sum(-1), torch.ones(3, 7), atol=1e-6)
    examples = colour_examples(8)
    batch = micro.encode_conversations([e.image for e in examples], [[(e.question, e.answer)] for e in examples])
    micro.model.set_adapter("moe")
    for p in params.values():
        p.requires_grad_(True)
    micro.model.train()
    micro.model(**batch).loss.backward()
    for key, p in params.items():
        if ".lora_A." in key:
            per_expert = p.grad.reshape(4, 2, -1).abs().sum(dim=(1, 2))  # rank 8 = 4 experts of rank 2
            assert (per_expert > 0).all(), key
        if "gates" in key:
            assert p.grad.abs().sum() > 0, key
    micro.model.eval()


@pytest.mark.slow
def test_a_moelora_adapter_saves_and_loads_with_its_gates(micro, tmp_path):
    from mllmcl.engine.adapters import load_adapter, save_adapter
    from mllmcl.engine.generate import next_token_logits

    add_adapter(micro, "moe", MoELoraRecipe(rank=8, alpha=16.0, experts=4))
    train(micro, colour_examples(16), "moe", QUICK)
    examples = colour_examples(4, seed=5)
    before = next_token_logits(micro, [e.image for e in examples], [e.question for e in examples], adapters=["moe"] * 4)
    save_adapter(micro, "moe", tmp_path)
    load_adapter(micro, "again", tmp_path / "moe")
    after = next_token_logits(micro, [e.image for e in examples], [e.question for e in examples], adapters=["again"] * 4)
    assert torch.allclose(before, after, atol=1e-5)


@pytest.mark.slow
def test_every_registered_method_runs_through_two_tasks(tmp_path):
    """A new method is covered here by default: its name comes from the registry."""
    from test_runner import config_for, quiet
    from mllmcl.run.protocol import run
    from toy_cl import write_toy_benchmark

    root = write_toy_benchmark(tmp_path / "toy", train=16, test=4)
    methods = METHODS.names() + ["ewc+replay", "o-lora+replay"]
    config = config_for(root, methods, lora={"rank": 8, "alpha": 16.0}, ewc={"samples": 8}, **{"o-lora": {"rank": 4}})
    results = run(config, tmp_path / "run", log=quiet, progress=False).to_json()
    for name in methods:
        entry = results["methods"][name]
        assert entry["final"] is not None and len(entry["final"]) == 2, name
        assert set(entry["metrics"]) == {"MFT", "MFN", "MAA", "BWT", "Forgetting", "FWT"}
        if entry["sequential"]:
            assert len(entry["matrix"]) == 2 and len(entry["format_valid"]) == 2
