"""Every baseline's mechanism, through the method's own class: each test runs the method's `learn` on two toy
tasks and checks what its mechanism is for, against the same method (same names, so the same seeds) with
that mechanism off — so switching the mechanism off inside the method's code fails the test:

| method | mechanism | checked |
|---|---|---|
| ewc | the Fisher-weighted penalty | the adapter moves less, Fisher-weighted, than seq-lora's from the same anchor |
| lwf | the distillation term | the adapter stays closer to its teacher on the new data than seq-lora's |
| o-lora | the orthogonality loss | the new A overlaps the earlier A less than with λ1 = 0 |
| o-lora, sefe | the carried projector (`projector: true`) | task 2's projector starts where task 1's ended |
| moelora, cl-moe | the per-token gate | the trained gate changes the answers' logits |
| cl-moe | the momentum merge | the experts after a task are the merge of before and after |
| +replay | the replay buffer | the earlier task's rows reach the training call |
| sefe | RegLoRA's penalty | the new update is smaller at the earlier key positions than with λ = 0 |
| hide-llava | anchors + fusion | each task's queries weigh its own block; every layer but the top is fused |
| disco | prototypes | each task's queries weigh its own subspace |
"""
from __future__ import annotations

import copy

import pytest
import torch

from mllmcl.cl.context import Context
from mllmcl.cl.methods.build import build_method
from mllmcl.data import load_benchmark
from mllmcl.engine import blocks, moe
from mllmcl.engine.adapters import adapter_parameters
from mllmcl.engine.generate import next_token_logits
from test_runner import config_for
from toy_serve import write_toy_serve_benchmark

pytestmark = pytest.mark.slow
TRAIN = {"train": {"epochs": 4.0, "batch_size": 8, "lr": 5e-3}, "lora": {"rank": 8, "alpha": 16.0}}


def context(micro, root, tmp_path, method: str, **extra) -> Context:
    """A context on a copy of the micro backbone (each method learns on its own), with the toy tasks."""
    values = {**TRAIN, **extra}
    return Context(copy.deepcopy(micro), load_benchmark(root), config_for(root, [method], **values),
                   tmp_path / method, progress=False)


def learned(micro, root, tmp_path, spec: str, name: str | None = None, tasks: int = 2, **extra):
    """Method `spec` (under the label `name`, e.g. another method's, to share its seeds) after `tasks` tasks."""
    ctx = context(micro, root, tmp_path / (name or spec), spec, **extra)
    method = build_method(spec, ctx)
    if name:
        method = type(method)(ctx, name=name)
    for task in ctx.benchmark.tasks[:tasks]:
        method.learn(task)
    return method


@pytest.fixture(scope="module")
def worded(tmp_path_factory):
    """Two toy tasks that also differ by their questions (tests/toy_serve.py): what a text-only identity reads."""
    return write_toy_serve_benchmark(tmp_path_factory.mktemp("worded"), train=32, test=8, val=4)


def _params(method) -> dict[str, torch.Tensor]:
    return {k: p.detach().clone() for k, p in adapter_parameters(method.ctx.backbone, method.adapter).items()}


def test_ewc_moves_the_important_weights_less_than_seq_lora(micro, toy, tmp_path):
    ewc = learned(micro, toy, tmp_path, "ewc", tasks=1, ewc={"samples": 16, "lambda": 1e3})
    plain = learned(micro, toy, tmp_path, "seq-lora", name="ewc", tasks=1)
    fisher, anchor = ewc.fisher, ewc.anchor
    assert all(torch.equal(anchor[k], p) for k, p in _params(plain).items())  # same seeds, same first task
    task = ewc.ctx.benchmark.tasks[1]
    ewc.learn(task)
    plain.learn(task)

    def drift(method):
        return sum((fisher[k] * (p - anchor[k]) ** 2).sum().item() for k, p in _params(method).items())
    assert drift(ewc) < 0.5 * drift(plain)


def test_lwf_stays_closer_to_its_teacher_than_seq_lora(micro, toy, tmp_path):
    lwf = learned(micro, toy, tmp_path, "lwf", tasks=1, lwf={"alpha": 4.0})
    plain = learned(micro, toy, tmp_path, "seq-lora", name="lwf", tasks=1)
    task = lwf.ctx.benchmark.tasks[1]
    queries = [s.query for s in task.train[:16]]
    teacher = _logits(lwf, queries)
    lwf.learn(task)
    plain.learn(task)
    assert _kl(lwf, queries, teacher) < 0.5 * _kl(plain, queries, teacher)


def _logits(method, queries):
    return next_token_logits(method.ctx.backbone, [q.image for q in queries], [q.question for q in queries],
                             adapters=[method.adapter] * len(queries))


def _kl(method, queries, teacher):
    return torch.nn.functional.kl_div(_logits(method, queries).log_softmax(-1), teacher.log_softmax(-1),
                                      log_target=True, reduction="batchmean").item()


def test_o_lora_keeps_the_new_lora_orthogonal_to_the_earlier_one(micro, toy, tmp_path):
    from mllmcl.cl.methods.o_lora import lora_a_matrices, orthogonality

    def overlap(method):
        first, second = (lora_a_matrices(adapter_parameters(method.ctx.backbone, n)) for n in method.tasks)
        return orthogonality(second, [first]).item()
    with_loss = learned(micro, toy, tmp_path, "o-lora", **{"o-lora": {"rank": 4, "lambda1": 1.0}})
    without = learned(micro, toy, tmp_path / "off", "o-lora", **{"o-lora": {"rank": 4, "lambda1": 0.0}})
    assert overlap(with_loss) < 0.5 * overlap(without)


@pytest.mark.parametrize("spec", ["o-lora", "sefe"])
def test_the_carried_projector_goes_on_from_the_earlier_tasks(micro, toy, tmp_path, spec):
    """Task 2 trains the projector that task 1 left: it ends nearer that one than the base's (where a copy
    started afresh at every task would end), and the answering adapter holds it."""
    method = learned(micro, toy, tmp_path, spec, tasks=1, **{spec: {"projector": True}})
    after_first = dict(method.projector)
    method.learn(method.ctx.benchmark.tasks[1])
    after_second = method.projector

    def distance(a, b):
        return sum((a[k] - b[k]).norm() ** 2 for k in a).sqrt().item()
    model = dict(method.ctx.backbone.model.named_parameters())
    as_base = {k: model[k.replace("modules_to_save.<adapter>", "original_module")] for k in after_second}
    assert distance(after_second, after_first) < 0.8 * distance(after_second, as_base)
    answering = {k: p for k, p in _params(method).items() if ".modules_to_save." in k}
    assert answering and all(torch.equal(p, after_second[k.replace(f".{method.adapter}.", ".<adapter>.")])
                             for k, p in answering.items())
    assert all(".modules_to_save." not in k for name in method.tasks
               for k in adapter_parameters(method.ctx.backbone, name))  # the task LoRAs stay plain, summable


@pytest.mark.parametrize("spec", ["moelora", "cl-moe"])
def test_the_trained_gate_shapes_the_answers(micro, toy, tmp_path, spec):
    method = learned(micro, toy, tmp_path, spec, tasks=1, moelora={"experts": 4})
    queries = [s.query for s in method.ctx.benchmark.tasks[0].test]
    gated = _logits(method, queries)
    with torch.no_grad():
        for gate in moe.gates(method.ctx.backbone, method.adapter).values():
            gate.weight.zero_()  # a constant gate: every expert weighs the same on every token
    assert not torch.allclose(gated, _logits(method, queries), atol=1e-4)


def test_cl_moe_merges_each_expert_with_its_weights_before_the_task(micro, toy, tmp_path):
    merged = learned(micro, toy, tmp_path, "cl-moe", tasks=1, **{"cl-moe": {"merge": True, "momentum": 0.7}})
    plain = learned(micro, toy, tmp_path / "plain", "cl-moe", tasks=1)
    before = _params(merged)
    task = merged.ctx.benchmark.tasks[1]
    merged.learn(task)
    plain.learn(task)
    after, trained = _params(merged), _params(plain)  # the same training, without the merge
    # 2 experts, both among the usage_top most used of each task: none is exclusive to the first task
    for key in before:
        if ".lora_A." in key or ".lora_B." in key:
            assert torch.allclose(after[key], 0.7 * before[key] + 0.3 * trained[key], atol=1e-6), key
    assert any(not torch.equal(after[k], trained[k]) for k in before if ".lora_B." in k)


@pytest.mark.parametrize("spec", ["seq-lora+replay", "sefe+replay", "disco+replay"])
def test_replay_rows_reach_the_training_call(micro, toy, tmp_path, monkeypatch, spec):
    import mllmcl.cl.context as context_module

    seen: list[list] = []
    real = context_module.train

    def spy(backbone, rows, *args, **kwargs):
        seen.append(list(rows))
        return real(backbone, rows, *args, **kwargs)
    monkeypatch.setattr(context_module, "train", spy)
    learned(micro, toy, tmp_path, spec, replay={"k": 5})
    first, second = (ctx_task.name for ctx_task in load_benchmark(toy).tasks)
    assert {r.task for r in seen[0]} == {first}
    assert sum(r.task == first for r in seen[1]) == 5 and sum(r.task == second for r in seen[1]) == 32


def test_sefe_keeps_the_new_update_small_at_the_earlier_key_positions(micro, toy, tmp_path):
    from mllmcl.cl.methods.sefe import lora_updates

    def at_first_keys(method):
        keys = {k: v.clone() for k, v in method.keys.items()}  # the first task's key positions
        method.learn(method.ctx.benchmark.tasks[1])
        updates = lora_updates(adapter_parameters(method.ctx.backbone, method.tasks[-1]))
        return sum((b @ a)[keys[layer]].abs().mean().item() for layer, (b, a) in updates.items())
    with_penalty = learned(micro, toy, tmp_path, "sefe", tasks=1, sefe={"lambda": 2500.0})
    without = learned(micro, toy, tmp_path / "off", "sefe", tasks=1, sefe={"lambda": 0.0})
    assert at_first_keys(with_penalty) < 0.5 * at_first_keys(without)


def test_hide_llava_weighs_each_tasks_own_block_and_fuses_below_the_top(micro, toy, tmp_path, monkeypatch):
    import mllmcl.cl.methods.task_blocks as task_blocks

    method = learned(micro, toy, tmp_path, "hide-llava")
    for index, task in enumerate(method.ctx.benchmark.tasks):
        weights = method.block_weights([s.query for s in task.test])
        assert (weights[:, index] > 0.5).float().mean() >= 0.75, (task.name, weights)
    routes = []
    real = blocks.route

    def spy(backbone, name, weights, fused=(), learned=None):
        routes.append(set(fused))
        return real(backbone, name, weights, fused, learned)
    monkeypatch.setattr(task_blocks.blocks, "route", spy)
    method.answer([s.query for s in method.ctx.benchmark.tasks[0].test], 4)
    every = set(blocks.layers(method.ctx.backbone, method.adapter))
    top = blocks.top_layer_keys(method.ctx.backbone, method.adapter)
    assert routes and top and all(fused == every - top for fused in routes)


def test_disco_weighs_each_tasks_own_subspace(micro, worded, tmp_path):
    method = learned(micro, worded, tmp_path, "disco")
    for index, task in enumerate(method.ctx.benchmark.tasks):
        weights = method.block_weights([s.query for s in task.test])
        assert (weights[:, index] > 0.5).float().mean() >= 0.75, (task.name, weights)


@pytest.mark.parametrize("spec, extra", [("hide-llava", {}), ("disco", {}), ("sefe", {}),
                                         ("cl-moe", {"cl-moe": {"merge": True}}),
                                         ("o-lora", {"o-lora": {"projector": True}})])
def test_a_method_saved_after_one_task_resumes_to_the_same_answers(micro, toy, tmp_path, spec, extra):
    whole = learned(micro, toy, tmp_path / "whole", spec, **extra)
    first = learned(micro, toy, tmp_path / "first", spec, tasks=1, **extra)
    first.save(tmp_path / "saved")
    ctx = context(micro, toy, tmp_path / "again", spec, **extra)
    resumed = build_method(spec, ctx)
    tasks = ctx.benchmark.tasks
    resumed.restore(tmp_path / "saved", tasks[:1])
    resumed.learn(tasks[1])
    queries = [s.query for task in tasks for s in task.test]
    assert resumed.answer(queries, 4).texts == whole.answer(queries, 4).texts
    assert torch.equal(_logits_of(resumed, queries), _logits_of(whole, queries))


def _logits_of(method, queries):
    """The first answer token's logits, as the method answers (block methods through their routing)."""
    if hasattr(method, "block_weights"):
        learned_blocks = torch.zeros(method.blocks)
        learned_blocks[:len(method.learned)] = 1.0
        with blocks.route(method.ctx.backbone, method.adapter, method.block_weights(queries), method.fused_layers(),
                          learned_blocks):
            return _logits(method, queries)
    return _logits(method, queries)


def test_the_replay_budget_follows_the_release_share_by_task_position_or_a_count():
    from mllmcl.cl.methods.catalog import ReplaySettings

    release = ReplaySettings()
    assert [release.size(1500, t) for t in (2, 3, 4, 5, 6)] == [450, 450, 300, 300, 300]
    assert ReplaySettings(k=200).size(1500, 5) == 200 and ReplaySettings(k=200).size(50, 2) == 50
    assert ReplaySettings(share=(0.001,)).size(100, 2) == 1  # never an empty buffer


@pytest.mark.parametrize("spec, extra", [("hide-llava", {}), ("sefe", {}), ("cl-moe", {"cl-moe": {"merge": True}}),
                                         ("ewc", {})])
def test_a_resume_without_the_methods_saved_state_names_the_missing_file(micro, toy, tmp_path, spec, extra):
    from mllmcl.core.errors import UserError

    ctx = context(micro, toy, tmp_path, spec, **extra)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"empty/.*saved after 1 tasks is missing; the run cannot resume"):
        build_method(spec, ctx).restore(tmp_path / "empty", ctx.benchmark.tasks[:1])
