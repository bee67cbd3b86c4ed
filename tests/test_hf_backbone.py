"""`hf:<path>`: a LLaVA checkpoint saved by transformers loads through AutoModelForImageTextToText and
AutoProcessor, trains an adapter and generates; bad paths are clear errors."""
import subprocess
import sys

import pytest
import torch

from conftest import colour_examples, random_images
from mllmcl.core.errors import UserError
from mllmcl.engine.adapters import add_adapter
from mllmcl.engine.generate import generate
from mllmcl.engine.settings import TrainConfig
from mllmcl.engine.train import train
from mllmcl.models.load import load_backbone
from mllmcl.models.template import VICUNA_SYSTEM


@pytest.fixture
def saved_llava(micro, tmp_path):
    micro.model.save_pretrained(tmp_path)
    micro.processor.save_pretrained(tmp_path)
    return tmp_path


@pytest.mark.slow
def test_hf_round_trip_trains_and_generates(micro, saved_llava):
    backbone = load_backbone(f"hf:{saved_llava}")
    assert type(backbone.model).__name__ == "LlavaForConditionalGeneration"
    assert backbone.template.system == VICUNA_SYSTEM  # LLaVA-1.5 conversation template
    for a, b in zip(micro.model.state_dict().values(), backbone.model.state_dict().values()):
        assert torch.equal(a, b)
    add_adapter(backbone, "t1")
    stats = train(backbone, colour_examples(16), "t1", TrainConfig(epochs=1, batch_size=8, progress=False))
    assert stats.steps == 2 and all(loss == loss for loss in stats.losses)
    answers = generate(backbone, random_images(3), ["What color?"] * 3, max_new_tokens=4, adapters=["t1", None, "t1"])
    assert len(answers) == 3 and all(isinstance(a, str) for a in answers)


def test_unknown_backbone_and_empty_path_are_clear_errors(tmp_path):
    with pytest.raises(UserError, match="unknown backbone 'nope'"):
        load_backbone("nope")
    with pytest.raises(UserError, match="no checkpoint here"):
        load_backbone(f"hf:{tmp_path}")
    with pytest.raises(UserError, match="not a directory"):
        load_backbone(f"hf:{tmp_path}/missing")


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "mllmcl", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_cli_errors_exit_non_zero_with_one_clear_line(saved_llava, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("inputs")
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image at all")
    cases = [
        (["ask", "q", "--image", str(bad), "--backbone", f"hf:{saved_llava}"], f"{bad}: cannot decode image"),
        (["ask", "q", "--image", str(tmp_path / "none.png"), "--backbone", f"hf:{saved_llava}"], "image file not found"),
        (["ask", "q", "--image", str(bad), "--backbone", "llava-nope"], "unknown backbone 'llava-nope'"),
        (["ask", "q", "--image", str(bad), "--backbone", f"hf:{tmp_path}"], "no checkpoint here"),
    ]
    for args, message in cases:
        result = _cli(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr
        assert "Traceback" not in result.stderr
        assert result.stderr.strip().splitlines()[-1].startswith("mllmcl: error:")
