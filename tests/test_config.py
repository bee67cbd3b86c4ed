"""Run configs: defaults, YAML, `key=value` overrides, and clear errors for unknown keys and bad values."""
from __future__ import annotations

import pytest
import yaml

from mllmcl.config import DEFAULT_METHODS, RunConfig, load_config, parse_overrides, to_yaml
from mllmcl.errors import UserError


def test_defaults_are_the_documented_main_job():
    config = load_config()
    assert config == RunConfig()
    assert config.setting == "dcl" and config.methods == DEFAULT_METHODS and config.backbone == "tiny"
    assert config.data.benchmark == "synth" and config.router.kind == "prototype" and config.router.k == 20


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("setting: acl\nmethods: [seq-lora, replay]\ntrain: {epochs: 1, lr: 0.001}\nrouter: {kind: mllm}\n")
    config = load_config(path, ["train.epochs=3", "methods=zero-shot,mr-lora[prototype]", "seed=7", "lora.rank=8"])
    assert config.setting == "acl"
    assert config.methods == ("zero-shot", "mr-lora[prototype]")
    assert config.train.epochs == 3.0 and config.train.lr == 0.001 and isinstance(config.train.epochs, float)
    assert config.router.kind == "mllm" and config.seed == 7 and config.lora.rank == 8


def test_resolved_config_round_trips_through_yaml(tmp_path):
    config = load_config(None, ["data.tasks=RS,Med", "replay.k=5"])
    path = tmp_path / "config.yaml"
    path.write_text(to_yaml(config))
    assert load_config(path) == config
    assert yaml.safe_load(path.read_text())["data"]["tasks"] == ["RS", "Med"]


@pytest.mark.parametrize("override, message", [
    (["trian.epochs=1"], "trian"),
    (["train.epoch=1"], "train.epoch"),
    (["train.epochs=fast"], "train.epochs"),
    (["seed=1.5"], "seed"),
    (["router.kind=magic"], "router.kind"),
    (["setting=xyz"], "setting"),
    (["methods=seq-lora,seq-lora"], "twice"),
    (["router.k=0"], "router.k"),
    (["replay.source=disk"], "replay.source"),
    (["epochs"], "key=value"),
])
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(UserError, match=message.replace(".", r"\.")):
        load_config(None, override)


def test_bad_yaml_files_name_the_file(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(UserError, match="bad.yaml"):
        load_config(bad)
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    with pytest.raises(UserError, match="mapping"):
        load_config(listing)
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("train: {epochs: 1, colour: red}\n")
    with pytest.raises(UserError, match=r"unknown\.yaml.*train\.colour"):
        load_config(unknown)


def test_override_values_are_yaml_scalars():
    assert parse_overrides(["a.b=1", "c=true", "d=x,y", "e="]) == {"a": {"b": 1}, "c": True, "d": "x,y", "e": ""}


def test_a_data_root_may_name_its_own_setting():
    assert load_config(None, ["setting=toy", "data.benchmark=/data/root"]).setting == "toy"
