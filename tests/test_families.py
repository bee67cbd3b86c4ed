"""Every model family `hf:` loads (models/families.py), end to end on a tiny random-weight checkpoint built in
the test from the family's transformers configuration (models/random_checkpoint.py), offline: the prompt
format, the label mask, batched answers equal to one-at-a-time answers with mixed adapters and different
image sizes, adapter save and load, a two-task `mllmcl run` with seq-lora and MR-LoRA under both routers,
and one request through the OpenAI client. A random model's accuracies mean nothing; the paths must run
and agree."""
from __future__ import annotations

import pytest
import torch
from jinja2.sandbox import ImmutableSandboxedEnvironment
from PIL import Image

from mllmcl.core.errors import UserError
from mllmcl.engine.adapters import BASE, add_adapter, load_adapter, save_adapter
from mllmcl.engine.generate import generate, next_token_logits
from mllmcl.engine.settings import LoraRecipe
from mllmcl.models.backbone import IGNORE_INDEX
from mllmcl.models.families import FAMILIES
from mllmcl.models.load import load_backbone
from mllmcl.models.random_checkpoint import build_random_checkpoint
from mllmcl.models.template import ProcessorTemplate
from conftest import TEXTS, random_images

pytestmark = pytest.mark.slow
FAMILY_NAMES = FAMILIES.names()
PLAIN = LoraRecipe(rank=4, alpha=8.0, vision=False, projector=False)


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory) -> dict[str, str]:
    """One tiny random checkpoint per family, built once per test run."""
    root = tmp_path_factory.mktemp("families")
    texts = [*TEXTS, "Experts: A Colors; B Codes. Which expert? A B"] * 2  # the MLLM router's letters: one token each
    return {name: str(build_random_checkpoint(name, root / name, texts)) for name in FAMILY_NAMES}


@pytest.fixture(params=FAMILY_NAMES)
def backbone(request, checkpoints):
    return load_backbone(f"hf:{checkpoints[request.param]}", device="cpu")


def test_the_family_is_read_from_the_checkpoint_and_writes_its_own_prompts(backbone):
    family = FAMILIES.get(backbone.family)
    assert type(backbone.base_model).__name__ == family.classes
    prompt = backbone.template.prompt("<image>\nWhat colour?")
    assert prompt.count(backbone.template.image_token) == 1 and "What colour?" in prompt
    if family.chat == "processor":
        assert isinstance(backbone.template, ProcessorTemplate)
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What colour?"}]}]
        try:
            expected = backbone.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        except AttributeError:  # SmolVLM2's, image-only here, reads its video part's settings: render it directly
            jinja = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
            expected = jinja.from_string(backbone.processor.chat_template).render(messages=messages,
                                                                                add_generation_prompt=True)
        assert prompt == expected


def test_the_loss_covers_the_answers_and_their_end_of_turn_only(backbone):
    images = [Image.new("RGB", (40, 40)), Image.new("RGB", (90, 50))]
    batch = backbone.encode_conversations(images, [[("What colour?", "red")], [("Shape?", "star"), ("More?", "no")]])
    decoded = [backbone.tokenizer.decode(ids[labels != IGNORE_INDEX])
               for ids, labels in zip(batch["input_ids"], batch["labels"])]
    ends = [text for text, target in backbone.template.pieces([("q", "a")], backbone.tokenizer.eos_token) if target]
    end = ends[0][ends[0].index("a") + 1:]
    assert decoded[0].strip() == f"red{end}".strip()
    assert "star" in decoded[1] and "no" in decoded[1] and "Shape" not in decoded[1] and "colour" not in decoded[0]


def _two_adapters(backbone) -> None:
    for i, name in enumerate(("one", "two")):
        add_adapter(backbone, name, PLAIN)
        generator = torch.Generator().manual_seed(i)
        with torch.no_grad():  # non-zero updates, different per adapter
            for key, param in backbone.model.named_parameters():
                if f".lora_B.{name}." in key:
                    param.copy_(0.5 * torch.randn(param.shape, generator=generator))


def test_mixed_adapter_batches_of_different_image_sizes_answer_as_one_at_a_time(backbone):
    _two_adapters(backbone)
    images = [random_images(1, size, seed=size)[0] for size in (28, 56, 84, 40)]
    images[3] = images[3].resize((96, 40))  # not square: another number of image tokens where it is dynamic
    questions = ["What colour?", "How many squares are there?", "Is there a star?", "left or right"]
    adapters = ["one", "two", BASE, "one"]
    batched = next_token_logits(backbone, images, questions, adapters=adapters, batch_size=4)
    alone = torch.cat([next_token_logits(backbone, [i], [q], adapters=[a], batch_size=1)
                       for i, q, a in zip(images, questions, adapters)])
    assert torch.allclose(batched, alone, atol=1e-4)
    assert not torch.allclose(batched[0], next_token_logits(backbone, images[:1], questions[:1], batch_size=1)[0],
                              atol=1e-3)  # the adapter acts
    texts = generate(backbone, images, questions, adapters=adapters, max_new_tokens=4, batch_size=4)
    assert texts == [generate(backbone, [i], [q], adapters=[a], max_new_tokens=4, batch_size=1)[0]
                     for i, q, a in zip(images, questions, adapters)]


def test_finished_rows_leave_the_batch_and_the_answers_stay_those_of_one_call(backbone):
    from conftest import check_finished_rows_leave_the_batch

    _two_adapters(backbone)
    check_finished_rows_leave_the_batch(backbone, [BASE, BASE, "one", "one", "two"])


def test_an_adapter_saved_and_loaded_answers_the_same(backbone, tmp_path):
    _two_adapters(backbone)
    images, questions = random_images(2, 56), ["What colour?", "Is there a star?"]
    before = next_token_logits(backbone, images, questions, adapters=["two", "two"])
    save_adapter(backbone, "two", tmp_path)
    load_adapter(backbone, "again", tmp_path / "two")
    assert torch.equal(next_token_logits(backbone, images, questions, adapters=["again", "again"]), before)


def test_what_a_family_cannot_adapt_is_refused_by_name(backbone):
    family = FAMILIES.get(backbone.family)
    if family.projector is None:
        with pytest.raises(UserError, match="projector.*lora.projector=false"):
            add_adapter(backbone, "copy", LoraRecipe(rank=4, alpha=8.0, vision=False, projector=True))
    else:
        add_adapter(backbone, "copy", LoraRecipe(rank=4, alpha=8.0, vision=False, projector=True))
    if family.vision is None:
        with pytest.raises(UserError, match="vision.*lora.vision=false"):
            add_adapter(backbone, "seeing", LoraRecipe(rank=4, alpha=8.0, vision=True, projector=False))


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_a_two_task_run_exports_and_serves_through_the_openai_client(family, checkpoints, toy, tmp_path):
    from mllmcl.run.protocol import run
    from mllmcl.serve.grow import export_run
    from mllmcl.serve.routed import RoutedModel
    from mllmcl.serve.settings import ServeSettings
    from test_runner import config_for
    from test_serve import KEY, Server, ask, inputs

    projector = FAMILIES.get(family).projector is not None
    config = config_for(toy, ["seq-lora", "mr-lora", "mr-lora[mllm]"], backbone=f"hf:{checkpoints[family]}",
                        lora={"projector": projector, "vision": False}, router={"epochs": 2.0})
    results = run(config, tmp_path / "run", log=lambda _: None, progress=False)
    assert set(results.methods) == {"seq-lora", "mr-lora", "mr-lora[mllm]"}
    assert all(len(results.methods[m].final) == 2 for m in results.methods)
    assert results.methods["mr-lora"].routing is not None
    export_run(tmp_path / "run", tmp_path / "lib", log=lambda _: None)
    model = RoutedModel.load(tmp_path / "lib")
    images, questions = inputs("Colors", 1)
    expected = model.answer(images, questions, max_new_tokens=4)
    with Server(model, ServeSettings(api_key=KEY, max_tokens=8, max_wait=0.02, watch=0)) as server:
        response = ask(server.client(), "auto", questions[0], images[0])
    assert response.choices[0].message.content == expected.texts[0]
    assert response.model == expected.experts[0]
    # an expert added behind the gate (its checks relaxed: a random model learns nothing), then the library
    # exported for vLLM: only LLaVA-1.5's experts carry a projector copy to drop
    from mllmcl.serve.grow import add_expert
    from mllmcl.serve.library import Library
    from mllmcl.serve.vllm_export import TEMPLATE, export_vllm
    from toy_serve import write_rows

    bright = tmp_path / "bright"
    report = add_expert(tmp_path / "lib", "Bright", write_rows(bright, "Bright", "train", 16, 0, "train"),
                        write_rows(bright, "Bright", "test", 6, 0, "test"), epochs=1.0, max_drop=100.0,
                        min_routing=0.0, min_gain=-100.0, log=lambda _: None)
    assert report["passed"] and Library(tmp_path / "lib").current == 2
    grown = RoutedModel.load(tmp_path / "lib")
    assert grown.names == ["Colors", "Codes", "Bright"]
    assert grown.answer(images, questions, max_new_tokens=4, model="Bright").experts == ["Bright"]
    manifest = export_vllm(tmp_path / "lib", tmp_path / "vllm", max_drop=float("inf"), log=lambda _: None)
    assert set(manifest["experts"]) == {"Colors", "Codes", "Bright"}
    dropped = [e["dropped"] for e in manifest["experts"].values()]
    assert all(set(d) == {"projector"} for d in dropped) if projector else not any(dropped)
    assert (tmp_path / "vllm" / TEMPLATE).exists() == (FAMILIES.get(family).chat == "vicuna")


def test_the_model_block_reaches_transformers(checkpoints):
    from mllmcl.cl.config import load_config

    model = load_config(None, {"model": {"attention": "eager", "max_pixels": 4 * 28 * 28}}).model
    small = load_backbone(f"hf:{checkpoints['qwen2-vl']}", device="cpu", **model.load_options())
    default = load_backbone(f"hf:{checkpoints['qwen2-vl']}", device="cpu")
    image = Image.new("RGB", (200, 200))
    assert small.image_token_layouts(small.encode_prompts([image], ["q"])) == [(2, 2)]  # the pixel budget
    assert default.image_token_layouts(default.encode_prompts([image], ["q"])) == [(4, 4)]
    assert small.base_model.config._attn_implementation == "eager"


@pytest.mark.parametrize("closing", ["<think></think>", ""])
def test_a_chat_template_that_rewrites_the_prompt_once_answered_is_refused(closing):
    """A template whose answered turn is not its prompt followed by the answer (a thinking model's, which
    closes earlier turns differently) would put the label mask on the wrong tokens."""

    class Tokenizer:  # renders "the template" as a thinking model's would
        def apply_chat_template(self, messages, chat_template, tokenize, add_generation_prompt):
            text = "".join(f"<{m['role']}>" + (m["content"] if isinstance(m["content"], str) else
                                                 m["content"][-1]["text"]) for m in messages)
            answered = messages[-1]["role"] == "assistant"
            return (closing if answered else "") + text + ("<assistant>" if add_generation_prompt else "")

    class Processor:
        chat_template = "jinja"
        tokenizer = Tokenizer()

    if closing:
        with pytest.raises(ValueError, match="label mask cannot be exact"):
            ProcessorTemplate(Processor(), "<image>")
    else:
        assert ProcessorTemplate(Processor(), "<image>").pieces([("q", "a")], "")[1] == ("a", True)
