"""The embedded tiny backbone: the shipped checkpoint loads fast and answers its own pretraining questions,
and `pretrain` is deterministic under a seed."""
import json
import time

import pytest
import torch
from PIL import Image

from mllmcl.engine.generate import generate
from mllmcl.models.load import load_backbone
from mllmcl.models.tiny import WEIGHTS_DIR, TinyConfig
from mllmcl.pretrain.pretrain import PretrainConfig, evaluate_general, pretrain
from mllmcl.pretrain.vision import ATTRIBUTES, VisionStageConfig

# Measured on the shipped weights (1000 held-out examples of the instruction corpus, seed 0, docs/tiny.md):
# 49.8% overall, background 100%, color 88.5%, shape 60.6% (7 shapes: chance is 14%), count 52.9%, and
# every format's answers 100% in their format. The test uses 300 other examples (seed 7; measured there:
# 47.0% overall, background 100%, color 76.0%, shape 63.6%, count 50.0%, every format 100% in its format)
# and pass marks under those figures, far above an untrained model (~0%) and above chance. Size, yes/no
# and letter choice are at chance on these weights (docs/tiny.md), so they have no mark.
PASS_MARKS = {"overall": 45.0, "background": 85.0, "color": 70.0, "count": 45.0, "shape": 45.0}
MIN_FORMAT_VALID = 95.0


def test_shipped_checkpoint_is_small_and_complete():
    files = {p.name: p.stat().st_size for p in WEIGHTS_DIR.iterdir()}
    for name in ("config.json", "model.safetensors", "tokenizer.json", "processor_config.json",
                 "pretrain_report.json"):
        assert name in files, name
    assert sum(files.values()) <= 25 * 2**20
    report = json.loads((WEIGHTS_DIR / "pretrain_report.json").read_text())
    assert report["tiny"] == TinyConfig().to_dict()  # the shipped model is the documented default size


@pytest.mark.slow
def test_shipped_tiny_loads_in_seconds_and_answers_its_pretraining_questions():
    start = time.perf_counter()
    backbone = load_backbone("tiny")
    answer = generate(backbone, [Image.new("RGB", (48, 48), "white")], ["What color is the background?"])
    assert time.perf_counter() - start < 20 and isinstance(answer[0], str)
    result = evaluate_general(backbone, 300, seed=7)
    scores = {"overall": result["accuracy"], **result["per_family"]}
    for key, mark in PASS_MARKS.items():
        assert scores[key] >= mark, (key, scores)
    assert min(result["format_valid"].values()) >= MIN_FORMAT_VALID, result["format_valid"]


@pytest.mark.slow
def test_vision_stage_trains_the_tower_alone_and_ships_no_heads(tmp_path):
    """Stage 1 changes only the vision tower, and the checkpoint has no stage-1 heads (the freeze in stage 2
    is tested in test_engine)."""
    from mllmcl.models.backbone import Backbone
    from mllmcl.models.template import ChatTemplate
    from mllmcl.models.tiny import build_tiny
    from mllmcl.pretrain.corpus import tokenizer_texts
    from mllmcl.pretrain.vision import pretrain_vision

    model, processor = build_tiny(tokenizer_texts(), TinyConfig.micro(), seed=0)
    backbone = Backbone("micro", model, processor, ChatTemplate(), max_length=TinyConfig.micro().max_length)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = pretrain_vision(backbone, VisionStageConfig(steps=5, batch_size=8, views=40, heldout=8), seed=0,
                             progress=False)
    after = model.state_dict()
    assert set(after) == set(before)  # the heads are not part of the model
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all("vision_tower" in k for k in changed)
    assert report["steps"] == 5 and {k.split()[0] for k in report["heldout_accuracy"]} == set(ATTRIBUTES)

    config = PretrainConfig(pool=32, epochs=1, batch_size=16, eval_examples=4, instruction_pool=16,
                            vision=VisionStageConfig(steps=2, batch_size=8, views=16, heldout=4))
    pretrain(tmp_path / "m", config, TinyConfig.micro(), progress=False)
    shipped = load_backbone(f"hf:{tmp_path / 'm'}").model.state_dict()
    assert set(shipped) == set(after)


def test_patch_labels_name_what_lies_under_each_patch():
    import numpy as np

    from mllmcl.pretrain.corpus import Obj, Scene, SceneView, _object_map, _render
    from mllmcl.pretrain.vision import patch_labels

    square = Obj("square", "red", "large", 0.5, 0.5, 0.5, (220, 35, 35))  # covers the centre 2x2 of a 4x4 grid
    scene = Scene((square,), "white", "plain", ((242, 242, 240),))
    view = SceneView(_render(scene, 32, np.random.default_rng(0)), scene, _object_map(scene, 32))
    labels = patch_labels(view, patch=8)
    centre = {5, 6, 9, 10}
    names = {a: [ATTRIBUTES[a][i] for i in labels[a]] for a in labels}
    assert [i for i, n in enumerate(names["shape"]) if n == "square"] == sorted(centre)
    assert all(names["shape"][i] == "background" for i in set(range(16)) - centre)
    assert {names["color"][i] for i in centre} == {"red"} and {names["size"][i] for i in centre} == {"large"}
    assert {names["color"][i] for i in set(range(16)) - centre} == {"white"}
    textured = SceneView(view.image, Scene((square,), None, "noise", scene.tones), view.object_map)
    assert ATTRIBUTES["color"][patch_labels(textured, 8)["color"][0]] == "textured"


@pytest.mark.slow
def test_pretrain_is_deterministic_under_a_seed(tmp_path):
    micro = TinyConfig.micro()
    config = PretrainConfig(pool=48, epochs=1, batch_size=16, eval_examples=8, instruction_pool=16,
                            vision=VisionStageConfig(steps=3, batch_size=8, views=24, heldout=8))
    reports = [pretrain(tmp_path / name, config, micro, progress=False) for name in ("one", "two")]
    assert reports[0]["final_loss"] == reports[1]["final_loss"]
    untimed = [{k: v for k, v in r["vision_stage"].items() if "second" not in k} for r in reports]
    assert untimed[0] == untimed[1]
    assert {k.split()[0] for k in reports[0]["vision_stage"]["heldout_accuracy"]} == set(ATTRIBUTES)
    one = load_backbone(f"hf:{tmp_path / 'one'}")
    two = load_backbone(f"hf:{tmp_path / 'two'}")
    for (k, a), b in zip(one.model.state_dict().items(), two.model.state_dict().values()):
        assert torch.equal(a, b), k
    assert (tmp_path / "one" / "pretrain_report.json").is_file()
    assert not list(tmp_path.glob(".*tmp*"))  # nothing half-written left behind
