"""The engine: adapter isolation, save/load, mixed-adapter generation, learning, full fine-tuning."""
import pytest
import torch

from conftest import colour_examples, random_images
from mllmcl.core.errors import UserError
from mllmcl.engine.adapters import add_adapter, load_adapter, save_adapter
from mllmcl.engine.generate import generate, inference_session, next_token_logits, pooled_features
from mllmcl.engine.settings import LoraRecipe, TrainConfig
from mllmcl.engine.train import train

FAST = TrainConfig(epochs=1, batch_size=8, lr=5e-3, progress=False)


def _state(module: torch.nn.Module, keep) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items() if keep(k)}


@pytest.mark.slow
def test_training_adapter_a_leaves_base_and_adapter_b_bit_identical(micro):
    add_adapter(micro, "t1")
    add_adapter(micro, "t2")
    # give b non-zero weights first, so "unchanged" is a real check and not B == 0 == 0
    train(micro, colour_examples(16), "t2", FAST)
    not_a = lambda k: ".t1." not in k and not k.endswith(".t1")  # noqa: E731
    before = _state(micro.model, not_a)
    a_before = _state(micro.model, lambda k: not not_a(k))
    train(micro, colour_examples(32), "t1", FAST)
    after = _state(micro.model, not_a)
    assert before.keys() == after.keys() and len(before) > 0
    for key in before:
        assert torch.equal(before[key], after[key]), key
    assert any(k.endswith("lora_B.t1.weight") for k in a_before)
    changed = [k for k, v in _state(micro.model, lambda k: not not_a(k)).items() if not torch.equal(v, a_before[k])]
    assert changed, "training adapter a changed none of its weights"
    assert any("multi_modal_projector" in k for k in changed)  # the per-adapter projector trains too


@pytest.mark.slow
def test_lora_learns_a_new_task(micro):
    add_adapter(micro, "colour", LoraRecipe(rank=16, alpha=32))
    data = colour_examples(256)
    stats = train(micro, data, "colour", TrainConfig(epochs=6, batch_size=16, lr=3e-3, progress=False))
    assert stats.losses[-1] < 0.25 * stats.losses[0]
    test = colour_examples(32, seed=1)
    answers = generate(micro, [e.image for e in test], [e.question for e in test], ["colour"] * 32,
                       max_new_tokens=4)
    accuracy = sum(a == e.answer for a, e in zip(answers, test)) / len(test)
    assert accuracy >= 0.9, answers
    # the base model, asked without an adapter, has not learned it
    base = generate(micro, [e.image for e in test], [e.question for e in test], max_new_tokens=4)
    assert sum(a == e.answer for a, e in zip(base, test)) / len(test) < 0.5


@pytest.mark.slow
def test_full_fine_tuning_trains_every_parameter(micro):
    before = _state(micro.model, lambda k: True)
    stats = train(micro, colour_examples(64), None, TrainConfig(epochs=4, batch_size=16, lr=3e-3, progress=False))
    after = micro.model.state_dict()
    changed = sum(not torch.equal(before[k], after[k]) for k in before)
    assert changed >= 0.9 * len(before)
    assert stats.losses[-1] < stats.losses[0]


@pytest.mark.slow
def test_full_fine_tuning_can_keep_the_vision_tower_frozen(micro):
    before = _state(micro.model, lambda k: True)
    train(micro, colour_examples(32), None, TrainConfig(epochs=1, batch_size=16, lr=3e-3, progress=False),
          freeze="vision_tower")
    after = micro.model.state_dict()
    tower = [k for k in before if "vision_tower" in k]
    assert tower and all(torch.equal(before[k], after[k]) for k in tower)
    assert all(not torch.equal(before[k], after[k]) for k in before if "multi_modal_projector" in k)
    import pytest

    add_adapter(micro, "t1")
    with pytest.raises(ValueError, match="full fine-tuning"):
        train(micro, colour_examples(8), "t1", FAST, freeze="vision_tower")


@pytest.mark.slow
def test_save_then_load_gives_identical_outputs(micro, tmp_path):
    from mllmcl.models.backbone import Backbone

    base_state = _state(micro.model, lambda k: True)
    for i, name in enumerate(("t1", "t2")):
        add_adapter(micro, name)
        train(micro, colour_examples(32, seed=i), name, FAST)
        save_adapter(micro, name, tmp_path)
    images, questions = random_images(6), ["What color is the image?"] * 6
    mix = ["t1", "t2", None, "t1", "t2", "t2"]
    expected = next_token_logits(micro, images, questions, mix)
    expected_text = generate(micro, images, questions, mix, max_new_tokens=6)

    from conftest import TEXTS
    from mllmcl.models.tiny import TinyConfig, build_tiny
    model, processor = build_tiny(TEXTS, TinyConfig.micro(), seed=1)
    model.load_state_dict(base_state)
    fresh = Backbone("fresh", model, processor, micro.template)
    for name in ("t1", "t2"):
        load_adapter(fresh, name, tmp_path / name)
    assert torch.equal(next_token_logits(fresh, images, questions, mix), expected)
    assert generate(fresh, images, questions, mix, max_new_tokens=6) == expected_text
    assert (tmp_path / "t1" / "mllmcl_recipe.json").is_file()


@pytest.mark.slow
def test_mixed_adapter_batch_equals_a_loop_over_adapters(micro):
    for i, name in enumerate(("t1", "t2", "t3")):
        add_adapter(micro, name, LoraRecipe(projector=name != "t3"))  # t3 shares the base projector
        train(micro, colour_examples(32, seed=i), name, FAST)
    images = random_images(9, seed=3)
    # different lengths, so left padding differs between the mixed batch and each adapter's own batch
    questions = ["What color is the image?", "Color?", "What is the main color of this whole image, please?",
                 "What color?", "Name the color.", "Which color is it?", "Color of the image?",
                 "Say the color of the picture you see here.", "What color is shown?"]
    mix = ["t1", "t2", "t3", None, "t3", "t2", "t1", "__base__", "t1"]
    mixed = generate(micro, images, questions, mix, max_new_tokens=6)
    assert generate(micro, images, questions, mix, max_new_tokens=6, group_by_adapter=False) == mixed
    mixed_logits = next_token_logits(micro, images, questions, mix)
    for name in set(mix):
        rows = [i for i, m in enumerate(mix) if m == name]
        alone = generate(micro, [images[i] for i in rows], [questions[i] for i in rows],
                         None if name in (None, "__base__") else [name] * len(rows), max_new_tokens=6)
        assert alone == [mixed[i] for i in rows]
        alone_logits = next_token_logits(micro, [images[i] for i in rows], [questions[i] for i in rows],
                                         [name] * len(rows))
        assert torch.allclose(alone_logits, mixed_logits[rows], atol=1e-5)


def test_an_inference_session_answers_as_the_per_call_path_in_its_thread_and_in_others(micro):
    """A server's worker holds a session across batches; its answers, another thread's between them, and
    everything after it are those of the per-call path."""
    import threading

    for i, name in enumerate(("t1", "t2")):
        add_adapter(micro, name, LoraRecipe(projector=name == "t1"))
        train(micro, colour_examples(32, seed=i), name, FAST)
    images, questions = random_images(6, seed=4), ["What color is the image?", "Color?"] * 3
    mix = ["t1", "t2", None, "t2", "t1", None]
    expected = generate(micro, images, questions, mix, max_new_tokens=5)
    logits = next_token_logits(micro, images, questions, ["t2"] * 6)
    features = pooled_features(micro, images, questions)
    elsewhere: list = []
    micro.model.train()
    with inference_session(micro):
        assert generate(micro, images, questions, mix, max_new_tokens=5) == expected
        assert torch.allclose(next_token_logits(micro, images, questions, ["t2"] * 6), logits, atol=1e-5)
        assert torch.allclose(pooled_features(micro, images, questions), features, atol=1e-5)
        other = threading.Thread(target=lambda: elsewhere.append(generate(micro, images, questions, mix,
                                                                         max_new_tokens=5)))
        other.start()
        other.join()
        assert generate(micro, images, questions, None, max_new_tokens=5) == \
            generate(micro, images, questions, ["__base__"] * 6, max_new_tokens=5)
    assert elsewhere == [expected]
    assert generate(micro, images, questions, mix, max_new_tokens=5) == expected
    assert micro.model.training and all(not m.disable_adapters for m in micro.model.modules()
                                        if hasattr(m, "lora_A"))


@pytest.mark.slow
def test_mixed_batches_match_peft_own_mixed_forward(micro):
    """The engine's contiguous-run LoRA path against peft's `adapter_names` forward, as the reference: an
    interleaved batch with a base row (one matmul pair per run) and a balanced one (one batched pair)."""
    from mllmcl.engine.mixed import adapter_runs, supports

    for i, name in enumerate(("t1", "t2")):
        add_adapter(micro, name)
        train(micro, colour_examples(32, seed=i), name, FAST)
    images = random_images(6, seed=5)
    questions = ["What color is the image?", "Color?", "Name the color.", "What color?", "Which color is it?",
                 "Say the color of the picture you see here."]
    batch = micro.encode_prompts(images, questions)
    for names in (["t2", "t1", "__base__", "t2", "t1", "t1"], ["t2", "t1", "t1", "t2", "t1", "t2"]):
        assert adapter_runs(names) is None and supports(micro.model, names)  # the engine reorders the batch itself
        ours = next_token_logits(micro, images, questions, names)
        micro.model.eval()
        with torch.no_grad():
            reference = micro.model(**batch, adapter_names=names).logits[:, -1, :]
        assert torch.allclose(ours, reference, atol=1e-5)
        assert not torch.allclose(ours[0], ours[1], atol=1e-3)  # the adapters really differ


@pytest.mark.parametrize("names, path", [(["t1", "t1", "t2", "__base__", "t3", "t3", "t3"], "per run"),
                                         (["t1", "t2", "t2", "t3", "t3", "t3"], "padded"),
                                         (["t1", "t1", "t2", "t2", "t3", "t3"], "batched")])
@pytest.mark.slow
def test_one_token_steps_match_peft_own_mixed_forward(micro, names, path):
    """Decoding steps (one token per sample) equal peft's per-sample forward too, with three adapters (one
    without a projector copy), on each path of `engine/mixed.py`: base rows (one matmul pair per run), uneven
    runs covering the batch (padded to a common length), a balanced mix (batched as it is)."""
    from mllmcl.engine.mixed import mixed_adapters

    for i, name in enumerate(("t1", "t2", "t3")):
        add_adapter(micro, name, LoraRecipe(projector=name != "t2"))
        train(micro, colour_examples(32, seed=i), name, FAST)
    tokens = torch.randint(5, micro.tokenizer.vocab_size, (len(names), 1), generator=torch.Generator().manual_seed(0))
    micro.model.eval()
    with torch.no_grad():
        reference = micro.model(input_ids=tokens, adapter_names=names).logits[:, -1, :]
        base = micro.model(input_ids=tokens, adapter_names=["__base__"] * len(names)).logits[:, -1, :]
        with mixed_adapters(micro.model, names) as mixer:
            mixer.route(names)
            taken = {"per run" if hook.stacked is None else "padded" if hook.padding is not None else "batched"
                     for hook in mixer._hooks if hasattr(hook, "stacked")}
            assert taken == {path}
            ours = micro.model(input_ids=tokens).logits[:, -1, :]
    assert torch.allclose(ours, reference, atol=1e-5)
    for row, name in enumerate(names):  # the adapters really change these rows
        assert torch.allclose(ours[row], base[row], atol=1e-5) == (name == "__base__")


@pytest.mark.slow
def test_an_adapter_on_embeddings_falls_back_to_peft_mixed_batches(micro):
    from peft import LoraConfig

    from mllmcl.engine.mixed import supports

    add_adapter(micro, "t1", LoraRecipe(projector=False))  # peft cannot mix adapters with and without copies
    train(micro, colour_examples(32), "t1", FAST)
    micro.model.add_adapter("emb", LoraConfig(r=4, target_modules=["embed_tokens"], init_lora_weights=False))
    assert not supports(micro.model, ["emb", "t1"]) and supports(micro.model, ["t1", "t1"])
    images, questions = random_images(4, seed=2), ["What color is the image?"] * 4
    mixed = next_token_logits(micro, images, questions, ["t1", "emb", "t1", "emb"])
    for name, rows in (("t1", [0, 2]), ("emb", [1, 3])):
        alone = next_token_logits(micro, [images[i] for i in rows], [questions[i] for i in rows], [name] * 2)
        assert torch.allclose(alone, mixed[rows], atol=1e-5)


@pytest.mark.slow
def test_next_token_logits_agree_with_greedy_generation(micro):
    add_adapter(micro, "t1")
    train(micro, colour_examples(32), "t1", FAST)
    images, questions = random_images(4), ["What color is the image?"] * 4
    first = next_token_logits(micro, images, questions, ["t1"] * 4).argmax(dim=1)
    batch = micro.encode_prompts(images, questions)
    with torch.no_grad():
        out = micro.model.generate(**batch, adapter_names=["t1"] * 4, max_new_tokens=1, do_sample=False)
    assert torch.equal(out[:, -1], first)


def test_unknown_adapter_is_a_clear_error(micro):
    add_adapter(micro, "t1")
    import pytest

    with pytest.raises(UserError, match="'nope' is not loaded"):
        generate(micro, random_images(1), ["q"], ["nope"])
    with pytest.raises(UserError, match="already exists"):
        add_adapter(micro, "t1")
    with pytest.raises(UserError, match="no saved adapter"):
        load_adapter(micro, "z", "/nonexistent")


@pytest.mark.slow
def test_training_is_deterministic_under_a_seed(micro):
    state = _state(micro.model, lambda k: True)
    torch.manual_seed(0)
    add_adapter(micro, "t1")
    first = train(micro, colour_examples(32), "t1", FAST).losses
    from conftest import TEXTS
    from mllmcl.models.backbone import Backbone
    from mllmcl.models.tiny import TinyConfig, build_tiny
    model, processor = build_tiny(TEXTS, TinyConfig.micro(), seed=0)
    model.load_state_dict(state)
    again = Backbone("again", model, processor, micro.template)
    torch.manual_seed(0)
    add_adapter(again, "t1")
    assert train(again, colour_examples(32), "t1", FAST).losses == first


@pytest.mark.slow
def test_deleting_every_adapter_restores_the_bare_base_model(micro):
    images, questions = random_images(3), ["What color is the image?"] * 3
    before = next_token_logits(micro, images, questions)
    weights = _state(micro.model, lambda k: True)
    add_adapter(micro, "t1")
    train(micro, colour_examples(16), "t1", FAST)
    from mllmcl.engine.adapters import delete_adapter

    delete_adapter(micro, "t1")
    assert micro.adapter_names == [] and type(micro.model).__name__ == "LlavaForConditionalGeneration"
    restored = micro.model.state_dict()
    assert weights.keys() == restored.keys()
    assert all(torch.equal(weights[k], restored[k]) for k in weights)
    assert torch.allclose(next_token_logits(micro, images, questions), before, atol=1e-6)
    add_adapter(micro, "t2")  # and adapters can be added again
    assert micro.adapter_names == ["t2"]


@pytest.mark.slow
def test_vision_lora_skips_layers_llava_does_not_read():
    """LLaVA-1.5 reads the second-to-last vision layer: LoRA there would get no gradient and break DDP."""
    import dataclasses

    from conftest import TEXTS
    from mllmcl.models.backbone import Backbone
    from mllmcl.models.template import ChatTemplate
    from mllmcl.models.tiny import TinyConfig, build_tiny

    model, processor = build_tiny(TEXTS, dataclasses.replace(TinyConfig.micro(), vision_layers=3))
    micro = Backbone("micro3", model, processor, ChatTemplate())
    micro.model.config.vision_feature_layer = -2
    add_adapter(micro, "t1", LoraRecipe(vision=True))
    names = [n for n, _ in micro.model.named_parameters() if "lora_" in n and "vision_tower" in n]
    last = micro.model.config.vision_config.num_hidden_layers - 1
    assert names and not any(f"layers.{last}." in n for n in names)
    micro.model.set_adapter("t1")
    micro.model.train()
    batch = micro.encode_train(random_images(2), ["q", "q"], ["red", "blue"])
    micro.model(**batch).loss.backward()
    unused = [n for n, p in micro.model.named_parameters() if p.requires_grad and p.grad is None]
    assert unused == []


@pytest.mark.slow
def test_saving_over_an_adapter_replaces_it_whole(micro, tmp_path):
    add_adapter(micro, "t1")
    save_adapter(micro, "t1", tmp_path)
    train(micro, colour_examples(16), "t1", FAST)
    save_adapter(micro, "t1", tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t1"]  # no temporary or old folders left
    expected = next_token_logits(micro, random_images(2), ["q", "q"], ["t1", "t1"])
    from mllmcl.engine.adapters import delete_adapter

    delete_adapter(micro, "t1")
    load_adapter(micro, "t1", tmp_path / "t1")
    assert torch.equal(next_token_logits(micro, random_images(2), ["q", "q"], ["t1", "t1"]), expected)


def test_an_adapter_of_another_base_is_a_clear_error(micro, tmp_path):
    from conftest import TEXTS
    from mllmcl.models.backbone import Backbone
    from mllmcl.models.tiny import TinyConfig, build_tiny

    add_adapter(micro, "t1")
    save_adapter(micro, "t1", tmp_path)
    import dataclasses
    wider = dataclasses.replace(TinyConfig.micro(), text_hidden=96)
    model, processor = build_tiny(TEXTS, wider)
    other = Backbone("wider", model, processor, micro.template)
    import pytest

    with pytest.raises(UserError, match=r"adapter_model.safetensors: made for another base model: .* backbone wider "
                                        r"needs \[64, 96\]"):
        load_adapter(other, "t1", tmp_path / "t1")
    assert other.adapter_names == []  # checked before peft touched the model


@pytest.mark.slow
def test_a_methods_loss_fn_is_what_train_minimises(micro):
    """Extension point: `loss_fn` reaches the loop. A loss that ignores the data and pulls every LoRA B
    weight toward 1 must drive them there; the default loss would not."""
    from mllmcl.engine.adapters import adapter_parameters

    add_adapter(micro, "own", LoraRecipe(rank=4, alpha=8.0, projector=False))
    params = adapter_parameters(micro, "own")
    b_weights = [p for name, p in params.items() if "lora_B" in name]
    calls = []

    def pull_to_one(model, batch):
        calls.append(len(batch["input_ids"]))
        return sum(((w - 1.0) ** 2).mean() for w in b_weights)
    train(micro, colour_examples(32), "own", TrainConfig(epochs=4, batch_size=8, lr=5e-2, progress=False),
          loss_fn=pull_to_one)
    assert len(calls) == 16 and all(n == 8 for n in calls)
    # B starts at zero; Adam moves each weight by about lr per step toward 1 (the default loss would not)
    assert all(w.mean().item() > 0.25 for w in b_weights), [round(w.mean().item(), 3) for w in b_weights]


@pytest.mark.slow
def test_frozen_adapters_are_active_in_training_but_left_unchanged(micro):
    """Extension point: `frozen_adapters` join the forward pass (their update shapes the loss) while only the
    trained adapter gets gradients."""
    from mllmcl.engine.adapters import adapter_parameters
    from mllmcl.engine.train import model_inputs

    recipe = LoraRecipe(rank=4, alpha=8.0, projector=False)
    add_adapter(micro, "old", recipe)
    train(micro, colour_examples(32), "old", FAST)
    old = {k: v.detach().clone() for k, v in adapter_parameters(micro, "old").items()}
    add_adapter(micro, "new", recipe)
    seen = []

    def loss(model, batch):
        seen.append(sorted(model.active_adapters if isinstance(model.active_adapters, list) else [model.active_adapters]))
        return model(**model_inputs(batch)).loss
    train(micro, colour_examples(16, seed=2), "new", FAST, loss_fn=loss, frozen_adapters=["old"])
    assert seen and all(active == ["new", "old"] for active in seen)
    for key, value in adapter_parameters(micro, "old").items():
        assert torch.equal(value, old[key]) and not value.requires_grad, key


@pytest.mark.slow
def test_bf16_on_a_cpu_with_pinned_kernels_is_refused_in_one_line(micro, monkeypatch):
    """oneDNN pinned to AVX2 has no fast bf16 path (a 1024x4096x4096 product: 101 s against 0.065 s):
    training must refuse it before the first step, naming both ways out."""
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    add_adapter(micro, "t1")
    with pytest.raises(UserError, match="train.bf16=false.*MLLMCL_NATIVE_KERNELS=1"):
        train(micro, colour_examples(8), "t1", TrainConfig(epochs=1, batch_size=8, bf16=True, progress=False))
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    stats = train(micro, colour_examples(8), "t1", TrainConfig(max_steps=1, batch_size=8, bf16=True, progress=False))
    assert stats.steps == 1


@pytest.mark.slow
def test_the_scale_bench_runs_with_native_kernels_and_every_other_command_pinned():
    import os
    import subprocess
    import sys

    from mllmcl.core.reproducible import PINNED

    code = ("import sys, os\nfrom mllmcl.cli.main import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "print(os.environ.get('ONEDNN_MAX_CPU_ISA'))")
    env = {k: v for k, v in os.environ.items() if k not in PINNED}
    out = [subprocess.run([sys.executable, "-c", code, *argv], env=env, capture_output=True,
                          text=True).stdout.strip().splitlines()[-1] for argv in (["bench", "scale", "--help"], ["ls"])]
    assert out == ["None", "AVX2"]


def test_results_record_the_cpu_the_arithmetic_ran_on():
    """Pinned kernels do not make every CPU add alike (docs/results.md, "Determinism"): results.json names it."""
    from mllmcl.core.reproducible import kernel_settings

    cpu = kernel_settings()["cpu"]
    assert set(cpu) == {"vendor", "model", "family", "model_number", "avx512"}
    assert isinstance(cpu["vendor"], str) and cpu["vendor"]
    assert isinstance(cpu["model"], str) and cpu["model"]


@pytest.mark.slow
def test_the_training_loss_is_the_models_own_loss_computed_at_the_answer_positions_only(micro):
    """`causal_lm_loss` runs the output head only where a row predicts an answer token; the loss is the
    model's own mean cross-entropy over the answers, whatever the padding and answer lengths of the rows."""
    from mllmcl.engine.train import causal_lm_loss, model_inputs

    add_adapter(micro, "t1", LoraRecipe(rank=4, alpha=8.0))
    train(micro, colour_examples(16), "t1", TrainConfig(epochs=1, batch_size=8, progress=False))  # B ≠ 0
    examples = colour_examples(6, seed=3)
    answers = ["red", "a much longer answer than the others", "7", "blue sky", "x", "green"]
    batch = micro.encode_train([e.image for e in examples], [e.question + " " * i for i, e in enumerate(examples)],
                               answers)
    seen = {}
    def count_rows(module, args, out):
        seen.setdefault("rows", args[0].shape[1])  # the first call: ours
    hook = micro.model.base_model.model.lm_head.register_forward_hook(count_rows)
    try:
        with torch.no_grad():
            ours = causal_lm_loss(micro.model, batch)
            reference = micro.model(**model_inputs(batch)).loss
    finally:
        hook.remove()
    assert ours.item() == pytest.approx(reference.item(), rel=1e-5)
    targets = (batch["labels"][:, 1:] != -100).any(dim=0)
    assert seen["rows"] == int(targets.sum()) < batch["input_ids"].shape[1] - 20  # the head ran on answers only


def test_grid_pooled_image_features_are_the_regions_means_of_the_image_tokens(micro):
    from mllmcl.engine.generate import pooled_features

    images, questions = random_images(3, 32), ["a?", "what is it?", "b"]
    whole = pooled_features(micro, images, questions, layer=1, tokens="image")
    grid = pooled_features(micro, images, questions, layer=1, tokens="image", grid=2)
    width = whole.shape[1]
    assert grid.shape == (3, 4 * width)
    # four equal regions of a 4x4 token square: their mean is the mean over all image tokens
    assert torch.allclose(grid.view(3, 4, width).mean(1), whole, atol=1e-5)
    assert not torch.allclose(grid[:, :width], grid[:, width:2 * width])  # the regions differ
    with pytest.raises(ValueError, match="pools image tokens only"):
        pooled_features(micro, images, questions, tokens="all", grid=2)
    finer = pooled_features(micro, images, questions, layer=1, tokens="image", grid=5)
    assert finer.shape == (3, 25 * width) and torch.isfinite(finer).all()  # fewer tokens than cells: repeated


def test_finished_rows_leave_the_batch_and_the_answers_stay_those_of_one_call(micro):
    from conftest import check_finished_rows_leave_the_batch

    for i, name in enumerate(("t1", "t2")):
        add_adapter(micro, name, LoraRecipe(projector=name == "t1"))
        train(micro, colour_examples(16, seed=i), name, FAST)
    check_finished_rows_leave_the_batch(micro, ["__base__", "__base__", "t1", "t1", "t2"])


def test_pooled_features_of_a_lower_layer_skip_the_layers_above_and_equal_the_whole_pass(micro):
    from mllmcl.engine.generate import _prompts, pooled_features

    images, questions = random_images(3, 32), ["a?", "what is it?", "b"]
    decoder = micro.model.model.language_model.layers
    assert len(decoder) == 2
    with torch.inference_mode():
        whole = micro.model(**_prompts(micro, images, questions), output_hidden_states=True).hidden_states
    mask = _prompts(micro, images, questions)["attention_mask"].unsqueeze(-1).float()
    top = []
    hook = decoder[-1].register_forward_hook(lambda *_: top.append(1))
    try:
        for layer in (0, 1, 2, -1, -2, -3):
            expected = (whole[layer] * mask).sum(1) / mask.sum(1)
            top.clear()
            assert torch.allclose(pooled_features(micro, images, questions, layer=layer), expected, atol=1e-5), layer
            assert bool(top) == (layer in (2, -1)), layer  # the top layer runs only when its output is asked for
    finally:
        hook.remove()


def test_grid_regions_follow_each_prompts_own_token_layout():
    from mllmcl.engine.generate import _regions

    hidden = torch.arange(2 * 8 * 1, dtype=torch.float32).view(2, 8, 1)
    image = torch.zeros(2, 8, dtype=torch.bool)
    image[0, 1:7] = True   # 2 x 3 tokens
    image[1, 0:4] = True   # 2 x 2 tokens
    cells = _regions(hidden, image, [(2, 3), (2, 2)], grid=2)
    # row 0: tokens 1..6 as [[1, 2, 3], [4, 5, 6]]; columns split 0:2 | 2:3 (rounded), rows 0:1 | 1:2
    assert cells[0].tolist() == [1.5, 3.0, 4.5, 6.0]
    assert cells[1].tolist() == [8.0, 9.0, 10.0, 11.0]
    with pytest.raises(ValueError, match="not the 3x3 its image makes"):
        _regions(hidden, image, [(3, 3), (2, 2)], grid=2)


def test_planned_batches_put_prompts_of_like_length_together_and_keep_each_adapter_contiguous():
    from mllmcl.engine.generate import _planned_batches

    lengths = [50, 10, 40, 20, 30, 60]
    assert [rows for rows, _ in _planned_batches(6, 2, None, lengths=lengths)] == [[1, 3], [4, 2], [0, 5]]
    names = ["a", "b", "a", "b", "a", "b"]
    plan = list(_planned_batches(6, 3, names, group_by_adapter=True, lengths=lengths))
    assert plan == [([4, 2, 0], ["a", "a", "a"]), ([1, 3, 5], ["b", "b", "b"])]
    assert sorted(i for rows, _ in _planned_batches(6, 4, names, lengths=lengths) for i in rows) == list(range(6))
