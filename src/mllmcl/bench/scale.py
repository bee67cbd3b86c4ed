"""Scale benchmark: what does the engine cost at a 7B-class model's shape?

The model is built from the configuration of LLaVA-1.5-7B (`--family llava`, the default) or of another
family's 7B-class model (`models/random_checkpoint.py`, `SHAPES_7B`: LLaVA-NeXT-7B, LLaVA-OneVision-7B, Qwen2/2.5-VL-7B,
Qwen3-VL-8B, InternVL3-8B, Idefics3-8B) with random weights — no download. LLaVA: a CLIP ViT-L/14 at 336 px (576 image tokens, the
second-to-last layer read) and a 4096-wide Llama of 32 layers, vocabulary 32064. `--layers K` keeps the first
K layers of both towers (a CPU cannot hold or train the full depth in reasonable time). The tokenizers are
small ones (the vocabulary only sizes the embeddings here), so prompt lengths are given in their tokens.
Through the engine's own calls, on one device, it times:

- expert training with MR-LoRA's 7B recipe (rank 128, alpha 256, dropout 0.05, every LM linear, projector
  trained where the family takes a copy; bf16 autocast where it is fast, see `bf16_autocast`; the official
  per-device batch 4 and gradient accumulation 2);
- greedy generation with one adapter, and routed generation where every batch mixes 4 adapters;
- the MLLM router's scoring pass (one forward pass over the official DCL router prompt, letters scored)
  against an expert's generation of the same samples.

It prints samples/s and peak memory (GPU: torch's peak allocation; CPU: the process's peak resident memory),
and the ratios routed / single (goal ≥ 0.9) and router pass / expert pass (in time per sample).
"""
from __future__ import annotations

import resource
import time
from dataclasses import dataclass, replace

import torch
from PIL import Image
from transformers import (CLIPImageProcessorPil, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                          LlavaForConditionalGeneration, LlavaProcessor)

from mllmcl.core.errors import UserError
from mllmcl.data.official_router import official_prompt
from mllmcl.data.records import Example
from mllmcl.engine.adapters import add_adapter
from mllmcl.engine.generate import generate, next_token_logits
from mllmcl.engine.settings import LoraRecipe, TrainConfig
from mllmcl.engine.train import train
from mllmcl.models.backbone import Backbone
from mllmcl.models.families import FAMILIES
from mllmcl.models.random_checkpoint import SHAPES_7B, build_random
from mllmcl.models.template import VICUNA_SYSTEM, ChatTemplate, ProcessorTemplate
from mllmcl.models.tiny import WEIGHTS_DIR

RECIPE = LoraRecipe(rank=128, alpha=256.0, dropout=0.05, vision=False, lm_head=False, projector=True)
QUESTION = ("Is there a residential building in the image? Look at the whole scene carefully, count what you see "
            "and answer with a single word.")


@dataclass(frozen=True)
class ScaleConfig:
    layers: int | None          # keep this many layers of each tower (None: all, e.g. 24 vision + 32 language)
    device: str
    dtype: str                  # auto: bfloat16 on GPU, float32 on CPU (bf16 autocast where fast: `bf16_autocast`)
    steps: int                  # timed optimizer steps (after one warm-up step)
    samples: int                # generation and routing samples
    batch_size: int             # per device
    grad_accum: int
    max_new_tokens: int = 8
    family: str = "llava"


def cuda_available() -> bool:
    return torch.cuda.is_available()


def build_7b_shaped(layers: int | None, device: str, dtype: torch.dtype) -> Backbone:
    """A LLaVA-1.5-7B-shaped backbone with random weights (a LlavaForConditionalGeneration, as `hf:` loads)."""
    tokenizer = LlavaProcessor.from_pretrained(WEIGHTS_DIR).tokenizer
    tokenizer.model_max_length = 4096  # LLaVA-1.5's window; the tiny model's own limit does not apply here
    vision = CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=layers or 24,
                              num_attention_heads=16, image_size=336, patch_size=14, projection_dim=768,
                              hidden_act="quick_gelu")
    text = LlamaConfig(vocab_size=32064, hidden_size=4096, intermediate_size=11008, num_hidden_layers=layers or 32,
                       num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096,
                       rms_norm_eps=1e-5, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                       eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=False)
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_index=tokenizer.image_token_id,
                         image_seq_length=576, vision_feature_layer=-2 if (layers or 24) > 1 else -1,
                         vision_feature_select_strategy="default", projector_hidden_act="gelu")
    with torch.device(device):
        model = LlavaForConditionalGeneration(config).to(dtype)
    model.eval()
    processor = LlavaProcessor(image_processor=CLIPImageProcessorPil(size={"shortest_edge": 336},
                                                                     crop_size={"height": 336, "width": 336}),
                               tokenizer=tokenizer, patch_size=14, vision_feature_select_strategy="default",
                               num_additional_image_tokens=1, image_token="<image>")
    return Backbone(f"llava-1.5-7b-shaped({layers or 'full'} layers)", model, processor,
                    ChatTemplate(system=VICUNA_SYSTEM))


def build_family_shaped(family: str, layers: int | None, device: str, dtype: torch.dtype) -> Backbone:
    """A random-weight backbone of `family` at its 7B-class shape (`SHAPES_7B`), the first `layers` layers kept."""
    if family not in SHAPES_7B:
        raise UserError(f"bench scale --family {family}: the family has no 7B-class model to take the shape of "
                        f"(shapes: llava, {', '.join(SHAPES_7B)})")
    texts = [QUESTION, official_prompt(QUESTION, "dcl")] * 4
    model, processor = build_random(family, texts, SHAPES_7B[family].cut(layers))
    model = model.to(device=device, dtype=dtype).eval()
    return Backbone(f"{family}-7b-shaped({layers or 'full'} layers)", model, processor,
                    ProcessorTemplate(processor, processor.image_token), family=family)


def _images(n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [Image.fromarray(torch.randint(0, 256, (336, 336, 3), generator=g, dtype=torch.uint8).numpy())
            for _ in range(n)]


def _peak_mib(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _timed(fn, device: str) -> float:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def bf16_autocast(device: str, dtype: str) -> bool:
    """Compute in bf16 autocast, as the 7B recipe trains, where it is fast: on a GPU, when asked for
    (`--dtype bf16`), or on a CPU with AVX-512 (oneDNN's bf16 kernels). A CPU without it emulates bf16 about a
    thousand times slower than float32, so there the bench computes in float32."""
    if device.startswith("cuda") or dtype == "bf16":
        return True
    return torch.backends.cpu.get_cpu_capability().upper().startswith("AVX512")


def run_scale_bench(config: ScaleConfig) -> dict:
    device = config.device
    dtype = {"auto": torch.bfloat16 if device.startswith("cuda") else torch.float32,
             "bf16": torch.bfloat16, "fp32": torch.float32}[config.dtype]
    bf16 = bf16_autocast(device, config.dtype)
    start = time.perf_counter()
    if config.family == "llava":
        backbone = build_7b_shaped(config.layers, device, dtype)
    else:
        backbone = build_family_shaped(config.family, config.layers, device, dtype)
    params = sum(p.numel() for p in backbone.model.parameters())
    build_seconds = time.perf_counter() - start
    recipe = replace(RECIPE, projector=FAMILIES.get(backbone.family).projector is not None)
    image_tokens = int((backbone.encode_prompts(_images(1), [QUESTION])["input_ids"] == backbone.image_token_id).sum())
    report: dict = {"family": config.family, "device": device, "dtype": str(dtype).removeprefix("torch."),
                    "bf16_autocast": bf16, "layers": config.layers or "full", "projector_copy": recipe.projector,
                    "batch_size": config.batch_size, "grad_accum": config.grad_accum,
                    "parameters": params, "build_seconds": round(build_seconds, 1)}

    # expert training with the 7B recipe
    for name in ("expert_a", "expert_b", "expert_c", "expert_d"):
        add_adapter(backbone, name, recipe)
    report["adapter_parameters"] = sum(p.numel() for n, p in backbone.model.named_parameters() if ".expert_a" in n)
    per_step = config.batch_size * config.grad_accum
    examples = [Example(image, QUESTION, "Yes") for image in _images(per_step * (config.steps + 1))]
    recipe = TrainConfig(max_steps=1, batch_size=config.batch_size, grad_accum=config.grad_accum, lr=2e-5,
                         bf16=bf16, progress=False)
    train(backbone, examples[:per_step], "expert_a", recipe)  # warm-up step
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    timed = TrainConfig(max_steps=config.steps, batch_size=config.batch_size, grad_accum=config.grad_accum,
                        lr=2e-5, bf16=bf16, progress=False)
    seconds = _timed(lambda: train(backbone, examples[per_step:], "expert_a", timed), device)
    report["train"] = {"samples_per_second": round(config.steps * per_step / seconds, 3),
                       "seconds_per_step": round(seconds / config.steps, 2), "peak_mib": round(_peak_mib(device))}

    # generation: one adapter, then every batch mixing four
    images = _images(config.samples, seed=1)
    questions = [QUESTION] * config.samples
    mixed = [("expert_a", "expert_b", "expert_c", "expert_d")[i % 4] for i in range(config.samples)]

    def gen(adapters):
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
            generate(backbone, images, questions, adapters=adapters, max_new_tokens=config.max_new_tokens,
                     batch_size=config.samples, group_by_adapter=False)

    gen(["expert_a"] * config.samples)  # warm-up, both paths
    gen(mixed)
    single = _timed(lambda: gen(["expert_a"] * config.samples), device)
    routed = _timed(lambda: gen(mixed), device)
    report["generate"] = {"single_samples_per_second": round(config.samples / single, 3),
                          "routed_samples_per_second": round(config.samples / routed, 3),
                          "routed_vs_single": round(single / routed, 3), "peak_mib": round(_peak_mib(device))}

    # the MLLM router's pass over the official prompt vs an expert's generation
    add_adapter(backbone, "router", LoraRecipe(rank=128, alpha=256.0, dropout=0.05, vision=False, lm_head=False,
                                               projector=False))
    prompts = [official_prompt(QUESTION, "dcl")] * config.samples

    def route():
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
            next_token_logits(backbone, images, prompts, adapters=["router"] * config.samples,
                              batch_size=config.samples, columns=[0, 1, 2, 3, 4])

    route()  # warm-up
    router_seconds = _timed(route, device)
    tokens = backbone.tokenizer
    report["router"] = {"samples_per_second": round(config.samples / router_seconds, 3),
                        "router_vs_expert_time": round(router_seconds / single, 3),
                        "prompt_tokens": {"router": len(tokens(prompts[0]).input_ids),
                                          "expert": len(tokens(QUESTION).input_ids), "image": image_tokens}}
    return report


def print_scale_report(report: dict) -> None:
    shape = "LLaVA-1.5-7B" if report["family"] == "llava" else f"{report['family']} 7B-class"
    print(f"scale benchmark: {shape} shape, {report['layers']} layers, {report['parameters'] / 1e9:.2f} B "
          f"parameters ({report['adapter_parameters'] / 1e6:.1f} M per rank-128 expert"
          f"{'' if report['projector_copy'] else ', no projector copy'}), {report['device']}, "
          f"{report['dtype']} weights, {'bf16 autocast' if report['bf16_autocast'] else 'float32 compute'}; built in "
          f"{report['build_seconds']} s")
    train_, gen, router = report["train"], report["generate"], report["router"]
    batch = f"batch {report['batch_size']} x accum {report['grad_accum']}"
    print(f"   expert training ({batch}):{' ' * max(1, 15 - len(batch))}{train_['samples_per_second']:.3f} samples/s "
          f"({train_['seconds_per_step']} s/step), peak {train_['peak_mib']} MiB")
    print(f"   generation, one adapter:              {gen['single_samples_per_second']:.3f} samples/s")
    print(f"   generation, 4 adapters mixed:         {gen['routed_samples_per_second']:.3f} samples/s "
          f"(routed / single = {gen['routed_vs_single']:.3f}; goal >= 0.9), peak {gen['peak_mib']} MiB")
    print(f"   MLLM router pass (official prompt):   {router['samples_per_second']:.3f} samples/s "
          f"(router / expert time = {router['router_vs_expert_time']:.3f}; prompt tokens {router['prompt_tokens']})")
