"""Run configs: defaults, YAML, `key=value` overrides, and clear errors for unknown keys and bad values."""
from __future__ import annotations

import pytest
import yaml

from mllmcl.cl.config import DEFAULT_METHODS, RunConfig, load_config, parse_overrides, to_yaml
from mllmcl.core.errors import UserError
from mllmcl.engine.settings import LoraRecipe


def test_defaults_are_the_documented_main_job():
    config = load_config()
    assert config == RunConfig()
    assert config.setting == "dcl" and config.methods == DEFAULT_METHODS and config.backbone == "tiny"
    assert config.data.benchmark == "synth" and config.router.kind == "prototype" and config.router.k is None


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


def test_every_shipped_configuration_loads():
    from mllmcl.cl.config import profiles

    names = profiles()
    assert {"full", "llava-7b-dcl", "llava-7b-acl", "qwen2.5-vl-7b-dcl", "qwen2.5-vl-7b-acl",
            "qwen2-vl-2b-dcl", "internvl-8b-dcl"} <= set(names) and all(names.values())
    for name in names:  # the 7B ones name a checkpoint folder that exists only where the user has one
        config = load_config(name, ["backbone=tiny"])
        assert config.methods
    qwen = load_config("qwen2.5-vl-7b-dcl", ["backbone=tiny"])  # a dotted name is a profile, not a file suffix
    assert not qwen.lora.projector and not qwen.lora.vision and qwen.model.max_pixels == 1280 * 28 * 28
    full = load_config("full")
    assert full.data.train == 2000 and full.data.test == 300 and full.lora.rank == 64
    assert full.train.epochs == 2 and full.train.batch_size == 32 and full.lora.vision


def test_the_run_defaults_fill_a_partly_given_block():
    """The run's recipe (rank 16, batch 8, …) differs from the engine's defaults; giving one key of a block
    must keep the run's defaults for the others, not fall back to the engine's."""
    default = load_config(None)
    given = load_config(None, ["train.lr=0.01", "lora.dropout=0.1"])
    assert given.train.lr == 0.01 and given.lora.dropout == 0.1
    assert (given.train.batch_size, given.train.epochs) == (default.train.batch_size, default.train.epochs)
    assert (given.lora.rank, given.lora.vision) == (default.lora.rank, default.lora.vision)
    assert default.lora.rank != LoraRecipe().rank  # else this test checks nothing


def test_seed_is_the_default_of_data_and_train_seeds():
    config = load_config(None, ["seed=4"])
    assert config.data.seed == 4 and config.train.seed == 4
    config = load_config(None, ["seed=4", "train.seed=9"])
    assert config.data.seed == 4 and config.train.seed == 9
    config = load_config(None, ["data.seed=2"])
    assert config.data.seed == 2 and config.train.seed == 0


def test_task_orders():
    from mllmcl.cl.config import resolve_order

    names = ["RS", "Med", "AD", "Sci", "Fin"]
    assert resolve_order("", names) == names
    assert resolve_order("random:0", names) == names
    shuffled = [resolve_order(f"random:{k}", names) for k in range(6)]
    assert all(sorted(s) == sorted(names) for s in shuffled)
    assert len({tuple(s) for s in shuffled}) == 6  # distinct orders, the first the benchmark's
    assert resolve_order("random:1", ["a", "b"]) == ["b", "a"] and resolve_order("random:2", ["a", "b"]) == ["a", "b"]
    assert shuffled[0] == names and resolve_order("random:1", names) == shuffled[1]  # seeded: the same k, the same order
    assert resolve_order("Fin,Sci,AD,Med,RS", names) == names[::-1]
    with pytest.raises(UserError, match="data.order"):
        resolve_order("Fin,Sci", names)
    assert load_config(None, ["data.order=Fin, Sci ,AD,Med,RS"]).data.order == "Fin,Sci,AD,Med,RS"


@pytest.mark.parametrize("override, message", [
    (["methods=seq-lora,nosuch"], "nosuch"),
    (["methods=mr-lora[nosuch]"], "nosuch"),
    (["methods=seq-lora[mllm]"], "seq-lora"),
    (["methods=mr-lora+replay"], r"\+replay"),
    (["replay.kk=3"], "replay.kk"),
    (["replay.k=0"], "replay.k"),
    (["router.shrinkage=2"], "router.shrinkage"),
    (["router.nope=2"], "router.nope"),
    (["data.order=random:x"], "data.order"),
    (["data.overlap=1.5"], "data.overlap"),
    (["eval.split=train"], "eval.split"),
    (["backbone=nosuch"], "backbone"),
    (["backbone=hf:/no/such/folder"], "backbone"),
    (["lora.rank=0"], "lora.rank"),
])
def test_methods_routers_and_their_settings_are_checked_at_load(override, message):
    with pytest.raises(UserError, match=message):
        load_config(None, override)


def test_a_block_of_a_method_is_typed_and_saved_with_the_config(tmp_path):
    config = load_config(None, ["replay.k=7", "methods=seq-lora,replay,seq-lora+replay"])
    assert config.block("replay").k == 7
    path = tmp_path / "config.yaml"
    path.write_text(to_yaml(config))
    assert yaml.safe_load(path.read_text())["replay"] == {"share": [0.3, 0.3, 0.2], "k": 7, "source": "train"}
    assert load_config(path) == config


def test_each_router_takes_its_own_buffer_size_unless_router_k_is_set():
    from types import SimpleNamespace

    from mllmcl.cl.routing.router import buffer_size

    default = SimpleNamespace(config=load_config(None, []))
    assert buffer_size(default, "prototype") == 200 and buffer_size(default, "mllm") == 20
    fixed = SimpleNamespace(config=load_config(None, ["router.k=50"]))
    assert buffer_size(fixed, "prototype") == 50 and buffer_size(fixed, "mllm") == 50
