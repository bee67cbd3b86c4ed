"""Fuzz: run configurations — a YAML file given to `--config` and `key=value` overrides — through
`mllmcl run --dry-run` and `mllmcl sweep --dry-run`, and a damaged results.json / config.yaml in the folder a
run resumes.

Property: the command succeeds (the resolved configuration is printed), or prints one line
`mllmcl: error: …` naming the file or the key, exits 2, and creates nothing: no --out folder, no file.
"""
from __future__ import annotations

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from fuzzkit import JUNK, SPECIAL_TEXT, TEXT, assert_keeps_promise, cli, damaged, fuzz, json_file, mutated, snapshot
from mllmcl.cl.config import RunConfig, to_dict

VALID = to_dict(RunConfig())
KEYS = sorted({f"{section}.{key}" if isinstance(value, dict) else section
               for section, block in VALID.items()
               for key, value in (block.items() if isinstance(block, dict) else [(section, block)])} |
              {f"{section}.{key}" for section, block in VALID.items() if isinstance(block, dict) for key in block})


def _yaml_text(doc) -> bytes:
    try:
        return yaml.safe_dump(doc, allow_unicode=True).encode("utf-8", "surrogatepass")
    except (yaml.YAMLError, TypeError, ValueError):
        return b"{]"


@given(content=st.one_of(mutated(VALID).map(_yaml_text), mutated(VALID).map(_yaml_text).flatmap(damaged),
                         st.binary(max_size=64), st.text(max_size=40).map(lambda t: t.encode("utf-8", "replace"))))
@pytest.mark.slow
@fuzz(120)
def test_yaml_config_file(tmp_path_factory, content):
    folder = tmp_path_factory.mktemp("config", numbered=True)
    path = folder / "run.yaml"
    path.write_bytes(content)
    out = folder / "out"
    before = snapshot(folder)
    outcome = cli(["run", "--config", path, "--out", out, "--dry-run"])
    assert_keeps_promise(outcome, [path], before=before, after=snapshot(folder))
    assert not out.exists()


OVERRIDE = st.one_of(
    st.tuples(st.sampled_from(KEYS), st.one_of(JUNK.map(lambda v: yaml.safe_dump(v, default_flow_style=True).strip()
                                                        if not isinstance(v, str) else v), SPECIAL_TEXT, TEXT)),
    st.tuples(st.one_of(TEXT, SPECIAL_TEXT, st.sampled_from(KEYS).map(lambda k: k + "x")), TEXT))


@pytest.mark.slow
@given(overrides=st.lists(OVERRIDE, min_size=1, max_size=3))
@fuzz(200)
def test_key_value_overrides(tmp_path_factory, overrides):
    folder = tmp_path_factory.mktemp("overrides", numbered=True)
    out = folder / "out"
    argv = [f"{key}={value}" for key, value in overrides]
    outcome = cli(["run", "--out", out, "--dry-run", *argv])
    names = [key.strip() or "key=value" for key, _ in overrides] + ["override", "config key", "method"]
    assert_keeps_promise(outcome, names)
    assert not out.exists()


@given(content=json_file({"format": 1, "run": {"setting": "dcl", "finished": None}, "tasks": ["RS", "Med"],
                          "zero_shot": [1.0, 2.0], "methods": {}}))
@pytest.mark.slow
@fuzz(60)
def test_results_json_of_a_folder_to_resume(tmp_path_factory, content):
    """A run folder holding a damaged results.json is refused with one line naming it, before any work. (A
    folder that passes goes on to load its data root, which does not exist here: another one-line error.)"""
    folder = tmp_path_factory.mktemp("resume", numbered=True)
    (folder / "results.json").write_bytes(content)
    (folder / "config.yaml").write_text("setting: dcl\n")
    before = snapshot(folder)
    outcome = cli(["run", "--out", folder, f"data.benchmark={folder / 'nodata'}"])
    assert_keeps_promise(outcome, [folder / "results.json", folder / "nodata", folder], ok=(), before=before,
                         after=snapshot(folder))
