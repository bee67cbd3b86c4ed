"""Batched inference with a per-sample choice of adapter: greedy generation and next-token scoring.

`adapters` is one adapter name per sample (`"__base__"` or None = the base model) or None for the base model
everywhere. Samples with different adapters share one batch, so routing each sample to its own expert costs
no extra passes: each batch is ordered by adapter and plain LoRA adapters run as contiguous row runs
(`engine/mixed.py`); anything else goes through peft's `adapter_names`.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import torch

from mllmcl.core.parallel import Processes
from mllmcl.core.progress import progress_bar
from mllmcl.data.records import ImageLike
from mllmcl.engine.adapters import BASE, require
from mllmcl.engine.mixed import MixedAdapters, mixed_adapters, supports
from mllmcl.models.backbone import Backbone
from mllmcl.models.families import FAMILIES


def _adapter_list(backbone: Backbone, adapters: Sequence[str | None] | None, n: int) -> list[str] | None:
    """Validate the whole request once, before any work: one known adapter name (or BASE) per sample."""
    if adapters is None:
        return None
    if len(adapters) != n:
        raise ValueError(f"{len(adapters)} adapter names for {n} samples")
    names = [a or BASE for a in adapters]
    require(backbone, set(names))
    return names


def _planned_batches(n: int, batch_size: int, names: list[str] | None, group_by_adapter: bool = False,
                     lengths: Sequence[int] | None = None):
    """Yield (rows, adapter names of those rows or None for the base model throughout), covering 0..n-1 once.

    With `lengths` (each row's prompt length, any unit) rows of like length share a batch, so little of a
    batch is padding: a batch costs its longest row times its size. Within a batch the rows are ordered by
    adapter (stable), so each adapter's samples are contiguous; with `group_by_adapter` the whole request is
    ordered by adapter first, so most batches hold a single adapter."""
    order = list(range(n))
    if lengths is not None:
        order.sort(key=lambda i: lengths[i])
    if names is not None and group_by_adapter:
        order.sort(key=lambda i: names[i])
    for start in range(0, n, batch_size):
        rows = order[start:start + batch_size]
        if names is None:
            yield rows, None
        else:
            rows.sort(key=lambda i: names[i])
            yield rows, [names[i] for i in rows]


Route = Callable[[list[str] | None], dict]


@dataclass(frozen=True)
class _Held:
    thread: int
    adapters: frozenset[str]
    mixer: MixedAdapters


_held: dict[int, _Held] = {}  # id(model) -> the session holding it


@contextmanager
def inference_session(backbone: Backbone) -> Iterator[None]:
    """Within it, this thread's inference calls on `backbone` (generate, next_token_logits, pooled_features)
    skip their per-call setup: eval mode, no grad, the adapters disabled and the mixed-batch hooks of every
    adapter loaded now (`engine/mixed.py`) are set up once for the whole session. A server answering batch
    after batch pays that setup once instead of twice per batch (routing, then answering). Calls from other
    threads, or naming an adapter loaded later, take the per-call path; so do adapters that are not plain
    LoRA (the session then holds nothing). The answers are the same either way (tested)."""
    model = backbone.model
    adapters = frozenset(backbone.adapter_names)
    if not adapters or id(model) in _held or not supports(model, adapters):
        yield
        return
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), mixed_adapters(model, adapters) as mixer:
            _held[id(model)] = _Held(threading.get_ident(), adapters, mixer)
            try:
                yield
            finally:
                del _held[id(model)]
    finally:
        model.train(was_training)


@contextmanager
def _inference(backbone: Backbone, names: list[str] | None) -> Iterator[Route]:
    """Eval mode and no grad for a whole request whose samples name `names` (None: the base model for all).
    Yields `route(batch_names) -> extra forward kwargs`, called before each batch. With no adapter requested
    the peft wrapper is bypassed (exactly the base model); plain LoRA adapters run as row runs
    (`engine/mixed.py`), anything else through peft's `adapter_names`. Inside this thread's
    `inference_session` the session's hooks serve the request."""
    model = backbone.model
    adapters = set(names or ()) - {BASE}
    held = _held.get(id(model))
    if held is not None and held.thread == threading.get_ident() and adapters <= held.adapters:
        try:
            yield lambda batch_names: held.mixer.route(batch_names or ()) or {}
        finally:
            held.mixer.route(())  # idle hooks add nothing: a call outside the session sees the base model
        return
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            if not adapters and backbone.adapter_names:
                with model.disable_adapter():
                    yield lambda _names: {}
            elif not adapters:
                yield lambda _names: {}
            elif supports(model, adapters):
                with mixed_adapters(model, adapters) as mixer:
                    yield lambda batch_names: mixer.route(batch_names) or {}
            else:
                yield lambda batch_names: {"adapter_names": batch_names}
    finally:
        model.train(was_training)


def _prompts(backbone: Backbone, images: Sequence[ImageLike], questions: Sequence[str]) -> dict:
    """Left-padded prompts on the model's device."""
    batch = backbone.encode_prompts(images, questions)
    return {k: v.to(backbone.device) if torch.is_tensor(v) else v for k, v in batch.items()}


def _lengths(questions: Sequence[str]) -> list[int]:
    """Each question's length in characters: a proxy for its prompt's token count that needs no tokenizing
    (image tokens left out; a fixed-resolution backbone gives every image the same number)."""
    return [len(q) for q in questions]


def _mine(batches: list, processes: Processes | None) -> list:
    """The batches this process computes: all of them, or its share when several processes split the work."""
    return batches if processes is None else [b for _, b in processes.shard(batches)]


def _gather(done: dict, processes: Processes | None) -> dict:
    """Row → result over every process (each computed its own batches)."""
    if processes is None:
        return done
    merged: dict = {}
    for part in processes.gather(done):
        merged.update(part)
    return merged


@dataclass(frozen=True)
class Generation:
    """One sample's greedy answer with what a server reports about it: the prompt's tokens (image tokens
    included), the answer's tokens (up to, not counting, the end-of-sequence token) and whether it ended by
    itself (`stopped`) or at its token limit."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    stopped: bool


def generate(backbone: Backbone, images: Sequence[ImageLike], questions: Sequence[str],
             adapters: Sequence[str | None] | None = None, max_new_tokens: int = 32, batch_size: int = 32,
             progress: bool = False, group_by_adapter: bool = True, processes: Processes | None = None) -> list[str]:
    """Greedy answers, one string per sample (text after `ASSISTANT:`, stripped), in input order.

    With `group_by_adapter` the samples are batched in adapter order (a stable sort), so a routed test set
    mostly forms single-adapter batches; a batch that still spans several adapters runs as one mixed batch.
    The answers do not depend on the grouping (tested). With `processes` (several processes, all calling
    this with the same arguments), each computes every world-th batch and all get every answer: each sample
    is answered in the same batch as in one process, so the answers are the same."""
    return [g.text for g in generate_detailed(backbone, images, questions, adapters, max_new_tokens, batch_size,
                                              progress, group_by_adapter, processes)]


def generate_detailed(backbone: Backbone, images: Sequence[ImageLike], questions: Sequence[str],
                      adapters: Sequence[str | None] | None = None, max_new_tokens: int | Sequence[int] = 32,
                      batch_size: int = 32, progress: bool = False, group_by_adapter: bool = True,
                      processes: Processes | None = None) -> list[Generation]:
    """`generate` with token counts, and with a token limit per sample if `max_new_tokens` is a list: each
    row decodes up to its own limit and then leaves the batch (greedy decoding makes the first k tokens the
    same whatever the limit, so requests of different limits share a batch)."""
    if len(images) != len(questions):
        raise ValueError(f"{len(images)} images for {len(questions)} questions")
    n = len(questions)
    limits = [max_new_tokens] * n if isinstance(max_new_tokens, int) else list(max_new_tokens)
    if len(limits) != n or any(k < 1 for k in limits):
        raise ValueError(f"max_new_tokens: one limit >= 1 per sample, got {max_new_tokens!r} for {n} samples")
    all_names = _adapter_list(backbone, adapters, n)
    tokenizer = backbone.tokenizer
    eos = tokenizer.eos_token_id
    done: dict[int, Generation] = {}
    bar = _bar(n, progress)
    with _inference(backbone, all_names) as route:
        plan = _planned_batches(n, batch_size, all_names, group_by_adapter, _lengths(questions))
        for rows, names in _mine(list(plan), processes):
            batch = _prompts(backbone, [images[i] for i in rows], [questions[i] for i in rows])
            prompt_lengths = batch["attention_mask"].sum(dim=1).tolist()
            cut = greedy_tokens(backbone, batch, route, names, [limits[i] for i in rows])
            for k, (i, text) in enumerate(zip(rows, tokenizer.batch_decode(cut, skip_special_tokens=True))):
                tokens = cut[k]
                stopped = eos in tokens
                used = tokens.index(eos) if stopped else len(tokens)
                done[i] = Generation(text.strip(), int(prompt_lengths[k]), used, stopped)
            if bar is not None:
                bar.update(len(rows))
    if bar is not None:
        bar.close()
    done = _gather(done, processes)
    return [done[i] for i in range(n)]


FIRST_SPELL = 4
"""New tokens decoded before the first check for finished rows; each later spell is twice the last."""


def greedy_tokens(backbone: Backbone, batch: dict, route: Route, names: list[str] | None,
                  limits: list[int]) -> list[list[int]]:
    """Greedy answer tokens of each row of `batch`, up to its own limit or its end-of-sequence token
    (included). A finished row leaves the batch: `generate` runs in spells of FIRST_SPELL, then twice as many
    new tokens at a time; after each spell the rows that ended or reached their limit are dropped, from the
    key/value cache as well (and from the per-row rope offsets of the Qwen-VL families), and the others go
    on from the cache. Greedy answers do not depend on the spells (tested against one call per family)."""
    model, tokenizer = backbone.model, backbone.tokenizer
    stops = _stop_tokens(model, tokenizer)
    answers: list[list[int]] = [[] for _ in limits]
    live = list(range(len(limits)))  # rows of `batch` still decoding, in batch order
    inputs, cache, spell = batch, None, FIRST_SPELL
    while live:
        budget = min(spell, max(limits[r] - len(answers[r]) for r in live))
        extra = route([names[r] for r in live] if names is not None else None)
        out = model.generate(**inputs, **({"cache": cache} if cache is not None else {}), **extra,
                             max_new_tokens=budget, do_sample=False, pad_token_id=tokenizer.pad_token_id,
                             return_dict_in_generate=True)
        new = out.sequences[:, inputs["input_ids"].shape[1]:].tolist()
        keep = []  # a row goes on when it has neither ended nor reached its limit (then it decoded `budget`)
        for k, r in enumerate(live):
            tokens = new[k][:limits[r] - len(answers[r])]
            end = next((j for j, token in enumerate(tokens) if token in stops), None)
            answers[r].extend(tokens if end is None else tokens[:end + 1])
            if end is None and len(answers[r]) < limits[r]:
                keep.append(k)
        if not keep:
            break
        cache = out.cache
        if len(keep) < len(live):
            _select_rows(model, cache, keep, len(live))
        index = torch.tensor(keep, device=out.sequences.device)
        grown = torch.ones(len(live), len(new[0]), dtype=inputs["attention_mask"].dtype,
                           device=inputs["attention_mask"].device)
        inputs = {"input_ids": out.sequences[index],
                  "attention_mask": torch.cat([inputs["attention_mask"], grown], dim=1)[index]}
        live = [live[k] for k in keep]
        spell *= 2
    return answers


def _stop_tokens(model: torch.nn.Module, tokenizer) -> set[int]:
    """The tokens that end a row's generation: the generation config's end-of-sequence token(s) and the
    tokenizer's."""
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    configured = configured if isinstance(configured, (list, tuple)) else [configured]
    return {t for t in (*configured, tokenizer.eos_token_id) if t is not None}


def _select_rows(model: torch.nn.Module, cache, keep: list[int], rows: int) -> None:
    """Keep only rows `keep` of a generation's state: its key/value cache and the per-row rope offsets
    that the Qwen-VL families hold on the model between decoding steps."""
    index = torch.tensor(keep)
    cache.batch_select_indices(index)
    for module in model.modules():
        deltas = getattr(module, "rope_deltas", None)
        if torch.is_tensor(deltas) and deltas.shape[0] == rows:
            module.rope_deltas = deltas[index.to(deltas.device)]


def next_token_logits(backbone: Backbone, images: Sequence[ImageLike], questions: Sequence[str],
                      adapters: Sequence[str | None] | None = None, batch_size: int = 32,
                      columns: Sequence[int] | None = None, processes: Processes | None = None) -> torch.Tensor:
    """Logits of the first answer token for each sample, shape (n, vocab) — or (n, len(columns)), only those
    token ids — in float32 on the CPU: one forward pass per batch. Used to score a closed set of candidate
    answers (e.g. a router's expert letters). `processes`: as in `generate`."""
    n = len(questions)
    all_names = _adapter_list(backbone, adapters, n)
    done: dict[int, torch.Tensor] = {}
    with _inference(backbone, all_names) as route:
        plan = _planned_batches(n, batch_size, all_names, lengths=_lengths(questions))
        for rows, names in _mine(list(plan), processes):
            batch = _prompts(backbone, [images[i] for i in rows], [questions[i] for i in rows])
            logits = backbone.model(**batch, **route(names), logits_to_keep=1).logits[:, -1, :].float().cpu()
            if columns is not None:
                logits = logits[:, list(columns)]
            done.update(zip(rows, logits))
    done = _gather(done, processes)
    return torch.stack([done[i] for i in range(n)]) if n else torch.empty(0)


def pooled_features(backbone: Backbone, images: Sequence[ImageLike], questions: Sequence[str],
                    batch_size: int = 32, layer: int = -1, tokens: str = "all", grid: int = 1,
                    processes: Processes | None = None) -> torch.Tensor:
    """The base model's hidden states of `layer` (0 = the input embeddings, image features included; -1 =
    the last layer) averaged over each prompt's `tokens` ("all", "text" or "image"), shape (n, hidden),
    float32 on the CPU, adapters off: a training-free description of what a sample is about. With
    `tokens="image"` and `grid` > 1 the image tokens are averaged per region of a `grid`×`grid` layout of the
    image (row-major, as the vision tower orders its patches) and the regions concatenated, shape
    (n, grid² · hidden): where things are, not only what."""
    if tokens not in ("all", "text", "image"):
        raise ValueError(f"tokens must be all, text or image, got {tokens!r}")
    if grid > 1 and tokens != "image":
        raise ValueError(f"a grid of regions pools image tokens only, got tokens={tokens!r}")
    done: dict[int, torch.Tensor] = {}
    decoder = _decoder_layers(backbone)
    with _inference(backbone, None):
        plan = _planned_batches(len(questions), batch_size, None, lengths=_lengths(questions))
        for chunk, _ in _mine(list(plan), processes):
            batch = _prompts(backbone, [images[i] for i in chunk], [questions[i] for i in chunk])
            if layer == 0 and tokens == "text":  # the text's input embeddings: no forward pass needed
                hidden = backbone.model.get_input_embeddings()(batch["input_ids"]).float()
            else:
                hidden = _hidden_states(backbone.model, batch, layer, decoder).float()
            image = (batch["input_ids"] == backbone.image_token_id)
            if grid > 1:
                pooled = _regions(hidden, image, backbone.image_token_layouts(batch), grid,
                                  first=FAMILIES.get(backbone.family).whole_view == "first")
            else:
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                if tokens != "all":
                    is_image = image.unsqueeze(-1).to(hidden.dtype)
                    mask = mask * is_image if tokens == "image" else mask * (1 - is_image)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
            done.update(zip(chunk, pooled.cpu()))
    done = _gather(done, processes)
    return torch.stack([done[i] for i in range(len(questions))]) if questions else torch.empty(0)


class _Reached(Exception):
    """Ends a forward pass from a hook once the layer whose output is wanted has run."""

    def __init__(self, hidden: torch.Tensor):
        super().__init__()
        self.hidden = hidden


def _decoder_layers(backbone: Backbone) -> torch.nn.ModuleList | None:
    """The language model's decoder layers (`…<language>.layers`), or None where none are found."""
    language = FAMILIES.get(backbone.family).language
    return next((m for name, m in backbone.model.named_modules()
                 if name.endswith(f"{language}.layers") and isinstance(m, torch.nn.ModuleList)), None)


def _hidden_states(model: torch.nn.Module, batch: dict, layer: int,
                   decoder: torch.nn.ModuleList | None) -> torch.Tensor:
    """What `model(**batch, output_hidden_states=True).hidden_states[layer]` holds, without computing the
    layers above `layer` or the vocabulary head: the `decoder` layer whose output it is (for the input
    embeddings, image features merged in: the first decoder layer, before it runs) ends the pass. The
    prototype router reads layer 2 of 4 on the tiny backbone, of 32 on a 7B one. The last layer's output,
    normalised, takes the whole pass."""
    depth = len(decoder) if decoder is not None else 0
    index = layer if layer >= 0 else depth + 1 + layer
    if not 0 <= index < depth:
        return model(**batch, output_hidden_states=True, logits_to_keep=1).hidden_states[layer]

    def stop(_module, _inputs, output):
        raise _Reached(output[0] if isinstance(output, tuple) else output)

    def before(_module, args, kwargs):
        raise _Reached(args[0] if args else kwargs["hidden_states"])

    hook = (decoder[0].register_forward_pre_hook(before, with_kwargs=True) if index == 0
            else decoder[index - 1].register_forward_hook(stop))
    try:
        model(**batch)
    except _Reached as reached:
        return reached.hidden
    finally:
        hook.remove()
    raise RuntimeError(f"the forward pass never reached language layer {index}")


def _regions(hidden: torch.Tensor, image: torch.Tensor, layouts: list[tuple[int, int]], grid: int,
             first: bool = False) -> torch.Tensor:
    """Each row's image tokens that show the whole image (`layouts`: rows × columns, row-major; the last ones,
    or the `first` ones, of a tiled image) averaged over a grid×grid layout of regions and concatenated:
    shape (rows, grid² · hidden). A side with fewer tokens than `grid` repeats them."""
    out = []
    for row, (height, width) in enumerate(layouts):
        tokens = hidden[row][image[row]]
        tokens = tokens[:height * width] if first else tokens[-height * width:]
        if tokens.shape[0] != height * width:
            raise ValueError(f"prompt {row}: {tokens.shape[0]} image tokens, not the {height}x{width} its image makes")
        square = tokens.view(height, width, -1)
        cells = [square[_cell(r, height, grid), _cell(c, width, grid)].mean((0, 1))
                 for r in range(grid) for c in range(grid)]
        out.append(torch.cat(cells))
    return torch.stack(out) if out else hidden.new_zeros(0, grid * grid * hidden.shape[-1])


def _cell(i: int, side: int, grid: int) -> slice:
    """The `i`-th of `grid` bands over `side` tokens (never empty)."""
    start = min(round(i * side / grid), side - 1)
    return slice(start, max(start + 1, round((i + 1) * side / grid)))


def _bar(total: int, progress: bool):
    if not progress:
        return None
    return progress_bar(total, "generate", "sample")
