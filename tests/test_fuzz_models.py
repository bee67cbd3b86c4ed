"""Fuzz: images given to `mllmcl ask --image` and to `load_image`, saved adapters given to
`mllmcl ask --adapter` and to `load_adapter`, and checkpoints given to `--backbone hf:<path>`, on the micro
LLaVA saved to disk (the same code path as any transformers checkpoint, in milliseconds).

Property: the answer is printed (exit 0), or one line `mllmcl: error: …` names the image, adapter folder or
file, or checkpoint, with exit 2; an adapter that fails to load leaves the backbone as it was (no half-
attached adapter) and nothing is written into the adapter folder.
"""
from __future__ import annotations

import io
import json
import shutil
import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from fuzzkit import (SPECIAL_TEXT, TEXT, assert_keeps_promise, assert_user_error, cli, encode, fuzz, mutated,
                     one_thread, png_claiming, snapshot)
from mllmcl.core.errors import UserError
from mllmcl.data import load_image
from mllmcl.engine.generate import generate


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with one_thread():
        yield


def _image(kind: str, draw) -> tuple[str, bytes | None]:
    """(file name, bytes) of an image that is broken or merely unusual; bytes None = a folder there."""
    def save(image: Image.Image, fmt: str, **kw) -> bytes:
        out = io.BytesIO()
        image.save(out, fmt, **kw)
        return out.getvalue()

    rgb = Image.new("RGB", (16, 16), (200, 30, 30))
    png = save(rgb, "PNG")
    if kind == "zero bytes":
        return "empty.png", b""
    if kind == "truncated":
        return "cut.png", png[:draw(st.integers(1, len(png) - 1))]
    if kind == "truncated jpeg":
        jpeg = save(rgb, "JPEG")
        return "cut.jpg", jpeg[:draw(st.integers(1, len(jpeg) - 1))]
    if kind == "flipped byte":
        at = draw(st.integers(0, len(png) - 1))
        return "flip.png", png[:at] + bytes([png[at] ^ draw(st.integers(1, 255))]) + png[at + 1:]
    if kind == "wrong extension":
        return draw(st.sampled_from(["photo.jpg", "photo.txt", "photo", "photo.gif"])), png
    if kind == "huge dimensions":
        return "huge.png", png_claiming(draw(st.sampled_from([(100_000, 100_000), (65_535, 65_535), (1, 2**31 - 1)])))
    if kind == "unusual mode":
        mode = draw(st.sampled_from(["P", "LA", "L", "1", "I;16", "RGBA", "CMYK", "I", "F"]))
        fmt = "TIFF" if mode in ("CMYK", "I", "F") else "PNG"
        return f"mode.{fmt.lower()}", save(Image.new(mode, (9, 5)), fmt)
    if kind == "odd size":
        size = draw(st.sampled_from([(1, 1), (1, 300), (300, 1), (3, 2)]))
        return "odd.png", save(Image.new("RGB", size, (1, 2, 3)), "PNG")
    if kind == "other format":
        fmt = draw(st.sampled_from(["GIF", "BMP", "WEBP", "TIFF", "ICO", "PPM"]))
        return f"other.{fmt.lower()}", save(rgb, fmt)
    if kind == "text":
        return "notes.png", "not an image, but some text\n".encode()
    if kind == "garbage":
        return "garbage.png", draw(st.binary(max_size=64))
    return "folder.png", None



KINDS = ["zero bytes", "truncated", "truncated jpeg", "flipped byte", "wrong extension", "huge dimensions",
         "unusual mode", "odd size", "other format", "text", "garbage", "folder"]


def _put(folder: Path, name: str, content: bytes | None) -> Path:
    path = folder / name
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    return path


@given(data=st.data())
@fuzz(80)
def test_load_image(tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("images", numbered=True)
    path = _put(folder, *_image(data.draw(st.sampled_from(KINDS), label="kind"), data.draw))
    try:
        image = load_image(path)
    except UserError as err:
        assert_user_error(err, [path])
    else:
        assert image.mode == "RGB" and min(image.size) >= 1


@pytest.mark.slow
@given(data=st.data())
@fuzz(8)
def test_ask_image(micro_checkpoint, tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("ask", numbered=True)
    good = _put(folder, "good.png", _image("wrong extension", lambda strategy: "good.png")[1])
    path = _put(folder, *_image(data.draw(st.sampled_from(KINDS), label="kind"), data.draw))
    before = snapshot(folder)
    outcome = cli(["ask", "What is it?", "--image", good, path, "--backbone", f"hf:{micro_checkpoint / 'model'}",
                   "--max-new-tokens", "2"])
    if assert_keeps_promise(outcome, [path], before=before, after=snapshot(folder)):
        assert [json.loads(line)["image"] for line in outcome.out.splitlines()] == [str(good), str(path)]


@given(question=st.one_of(TEXT, SPECIAL_TEXT, st.text(max_size=400), st.sampled_from(
    ["<image> <image> two?", "What is <image>?", "\udcff\udcfe", "a\x1b[31mred\x00", "word " * 300])))
@pytest.mark.slow
@fuzz(8)
def test_ask_question(micro_checkpoint, tmp_path_factory, question):
    """Any question a shell can pass (bytes that are not UTF-8 arrive as lone surrogates)."""
    if question.startswith("-"):
        question = " " + question  # argparse would read it as an option
    folder = tmp_path_factory.mktemp("question", numbered=True)
    image = _put(folder, "red.png", _image("wrong extension", lambda strategy: "red.png")[1])
    outcome = cli(["ask", question, "--image", image, "--backbone", f"hf:{micro_checkpoint / 'model'}",
                   "--max-new-tokens", "2"])
    if assert_keeps_promise(outcome, ["question"]):
        assert json.loads(outcome.out)["image"] == str(image)


# ---------------------------------------------------------------------------------------------- adapters

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "mllmcl_recipe.json")


def _other_base(weights: bytes) -> bytes:
    """The same adapter as if trained on another base model: every LoRA matrix one size wider."""
    from safetensors.torch import load, save

    tensors = load(weights)
    for name, tensor in tensors.items():
        if "lora_A" in name:
            tensors[name] = tensor.new_zeros(tensor.shape[0], tensor.shape[1] + 8)
    return save(tensors)


def _break_adapter(folder: Path, draw) -> str:
    """Damage the saved adapter in `folder` one way; returns how."""
    how = draw(st.sampled_from(["remove", "truncate", "flip header", "garbage weights", "config", "recipe",
                                "other base", "config of another base", "drop tensor", "folder in place",
                                "empty folder"]))
    weights = folder / "adapter_model.safetensors"
    if how == "remove":
        for name in draw(st.lists(st.sampled_from(ADAPTER_FILES), min_size=1, max_size=3, unique=True)):
            (folder / name).unlink()
    elif how == "truncate":
        data = weights.read_bytes()
        weights.write_bytes(data[:draw(st.integers(0, len(data) - 1))])
    elif how == "flip header":
        data = bytearray(weights.read_bytes())
        at = draw(st.integers(0, min(len(data) - 1, 8 + struct.unpack("<Q", bytes(data[:8]))[0])))
        data[at] ^= draw(st.integers(1, 255))
        weights.write_bytes(bytes(data))
    elif how == "garbage weights":
        weights.write_bytes(draw(st.binary(max_size=64)))
    elif how in ("config", "recipe"):
        path = folder / ("adapter_config.json" if how == "config" else "mllmcl_recipe.json")
        path.write_text(json.dumps(draw(mutated(json.loads(path.read_text()))), allow_nan=True)
                        .replace('"@@HUGE_INT@@"', "9" * 5000).replace('"@@DEEP@@"', "[" * 100_000 + "]" * 100_000))
    elif how == "other base":
        weights.write_bytes(_other_base(weights.read_bytes()))
    elif how == "config of another base":  # module names of another architecture (GPT-2's, OPT's, ViT's)
        config = json.loads((folder / "adapter_config.json").read_text())
        config.update(draw(st.sampled_from([
            {"target_modules": ["c_attn", "c_proj"], "modules_to_save": None},
            {"target_modules": r".*decoder\.layers\.\d+\.self_attn\.(q|v)_proj"},
            {"modules_to_save": ["model.multi_modal_projector.linear_9"]},
            {"target_modules": ["query", "value"], "base_model_name_or_path": "google/vit-base-patch16-224"}])))
        (folder / "adapter_config.json").write_text(json.dumps(config))
    elif how == "drop tensor":
        from safetensors.torch import load, save

        tensors = load(weights.read_bytes())
        del tensors[draw(st.sampled_from(sorted(tensors)))]
        weights.write_bytes(save(tensors))
    elif how == "folder in place":
        name = draw(st.sampled_from(ADAPTER_FILES))
        (folder / name).unlink()
        (folder / name).mkdir()
    else:
        for name in ADAPTER_FILES:
            (folder / name).unlink()
    return how


@pytest.fixture(scope="module")
def backbone(micro_checkpoint):
    """One micro backbone for every example: a failed load must leave it as it was, which the test checks."""
    from mllmcl.models.load import load_backbone

    return load_backbone(f"hf:{micro_checkpoint / 'model'}", device="cpu")


@pytest.mark.slow
@given(data=st.data())
@fuzz(40)
def test_load_adapter(backbone, micro_checkpoint, tmp_path_factory, data):
    from mllmcl.engine.adapters import delete_adapter, load_adapter

    folder = tmp_path_factory.mktemp("adapter", numbered=True) / "user"
    shutil.copytree(micro_checkpoint / "adapters" / "user", folder)
    how = _break_adapter(folder, data.draw)
    attached = list(backbone.adapter_names)
    before = snapshot(folder)
    try:
        load_adapter(backbone, "fuzzed", folder)
    except UserError as err:
        assert_user_error(err, [folder])
        assert backbone.adapter_names == attached, f"{how}: a failed load left {backbone.adapter_names}"
    else:
        delete_adapter(backbone, "fuzzed")
    assert snapshot(folder) == before
    image = Image.new("RGB", (16, 16))
    assert len(generate(backbone, [image], ["What?"], max_new_tokens=1)) == 1  # the base still answers


@pytest.mark.slow
@given(data=st.data())
@fuzz(10)
def test_ask_adapter(micro_checkpoint, tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("ask_adapter", numbered=True)
    adapter = folder / "user"
    shutil.copytree(micro_checkpoint / "adapters" / "user", adapter)
    _break_adapter(adapter, data.draw)
    image = folder / "red.png"
    Image.new("RGB", (16, 16), (200, 30, 30)).save(image)
    before = snapshot(folder)
    outcome = cli(["ask", "What color?", "--image", image, "--adapter", adapter,
                   "--backbone", f"hf:{micro_checkpoint / 'model'}", "--max-new-tokens", "2"])
    assert_keeps_promise(outcome, [adapter], before=before, after=snapshot(folder))


# ---------------------------------------------------------------------------------------------- checkpoints

CHECKPOINT_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                    "processor_config.json", "generation_config.json")


@given(data=st.data())
@fuzz(15)
def test_hf_checkpoint(micro_checkpoint, tmp_path_factory, data):
    from mllmcl.models.load import load_backbone

    folder = tmp_path_factory.mktemp("checkpoint", numbered=True) / "model"
    shutil.copytree(micro_checkpoint / "model", folder)
    name = data.draw(st.sampled_from(CHECKPOINT_FILES), label="file")
    path = folder / name
    how = data.draw(st.sampled_from(["remove", "truncate", "garbage", "mutate"]), label="how")
    if how == "remove":
        path.unlink()
    elif how == "truncate":
        content = path.read_bytes()
        path.write_bytes(content[:data.draw(st.integers(0, len(content) - 1), label="at")])
    elif how == "garbage":
        path.write_bytes(data.draw(st.binary(max_size=64), label="bytes"))
    elif name.endswith(".json"):
        doc = data.draw(mutated(json.loads(path.read_text())), label="json")
        path.write_bytes(encode(doc))
    before = snapshot(folder)
    try:
        backbone = load_backbone(f"hf:{folder}", device="cpu")
    except UserError as err:
        assert_user_error(err, [folder])
    else:
        image = Image.new("RGB", (16, 16))
        try:
            generate(backbone, [image], ["What?"], max_new_tokens=1)
        except UserError as err:  # a checkpoint that loads but cannot answer (a tokenizer without tokens, …)
            assert_user_error(err, [folder])
    assert snapshot(folder) == before
