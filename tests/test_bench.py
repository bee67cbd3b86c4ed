"""Every `mllmcl bench …` command and `mllmcl demo` runs its happy path, at the smallest size each allows, and
prints its figures (the figures themselves are timings: never asserted). On the session's toy run and library
where a benchmark reads one (conftest.py, `served`)."""
from __future__ import annotations

import json

import pytest
from PIL import Image

from mllmcl.cli.main import main

pytestmark = pytest.mark.slow


def test_bench_engine(capsys):
    assert main(["bench", "engine", "--steps", "1", "--batch-size", "2", "--repeats", "1", "--prompts", "4"]) == 0
    assert "train: engine / bare" in capsys.readouterr().out


def test_bench_routing(served, capsys, monkeypatch):
    import mllmcl.cl.routing.answer as answer

    generated = []
    real = answer.generate_detailed
    monkeypatch.setattr(answer, "generate_detailed", lambda *a, **k: generated.extend(a[2]) or real(*a, **k))
    assert main(["bench", "routing", "--run", str(served["run"]), "--repeats", "2"]) == 0
    out = capsys.readouterr().out
    assert "lookup answers == routed answers: True" in out
    samples = int(out.split(": ")[1].split(" test samples")[0])
    assert len(generated) == 2 * samples  # every repeat answers afresh: no answer comes from the run's memo


def test_bench_routers(tmp_path, capsys):
    import json

    assert main(["bench", "routers", "--overlaps", "0", "--routers", "prototype[text],prototype[k=4,grid=1]",
                 "--train", "20", "--skill", "0", "--cache", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "prototype[text]" in out and "prototype[k=4,grid=1]" in out and "skill 0.0" in out
    assert [json.loads(p.read_text())["skill"] for p in tmp_path.glob("*/synth.json")] == [0.0]


def test_a_router_variant_is_named_or_spelled_out_as_settings():
    from mllmcl.bench.routers import split_routers, variant
    from mllmcl.core.errors import UserError

    names = split_routers("mllm,mllm[epochs=24,lr=0.005],prototype[text]")
    assert names == ["mllm", "mllm[epochs=24,lr=0.005]", "prototype[text]"]
    assert variant(names[1]) == {"kind": "mllm", "epochs": 24, "lr": 0.005}
    with pytest.raises(UserError, match="unknown variant"):
        variant("mllm[fast]")


def test_bench_methods(tmp_path, capsys):
    import json

    assert main(["bench", "methods", "--methods", "seq-lora,disco", "--train", "20", "--skill", "0",
                 "--cache", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "seq-lora" in out and "disco" in out and "adapter params" in out
    assert [json.loads(p.read_text())["skill"] for p in tmp_path.glob("*/synth.json")] == [0.0]


def test_bench_scale_computes_in_bf16_only_where_it_is_fast(monkeypatch):
    import torch

    from mllmcl.bench.scale import bf16_autocast

    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    assert not bf16_autocast("cpu", "auto") and bf16_autocast("cpu", "bf16") and bf16_autocast("cuda", "auto")
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    assert bf16_autocast("cpu", "auto") and bf16_autocast("cpu", "fp32")


@pytest.mark.parametrize("family", ["llava", "qwen2.5-vl"])
def test_bench_scale(capsys, family):
    assert main(["bench", "scale", "--family", family, "--layers", "1", "--steps", "1", "--samples", "1",
                 "--batch-size", "1", "--grad-accum", "1"]) == 0
    out = capsys.readouterr().out
    assert "samples/s" in out and "batch 1 x accum 1" in out


def test_bench_serve(served, tmp_path, capsys):
    out = tmp_path / "serve.json"
    assert main(["bench", "serve", "--library", str(served["lib"]), "--requests", "2", "--concurrency", "1,2",
                 "--repeats", "1", "--max-tokens", "4", "--out", str(out)]) == 0
    assert "answers = offline" in capsys.readouterr().out and out.is_file()
    report = json.loads(out.read_text())
    assert all(level["answers_match_offline"] and 0 < level["worker_busy"] <= 1 for level in report["levels"])
    with Image.open(out.with_suffix(".png")) as plot:  # the figures as a picture, beside the JSON
        assert plot.format == "PNG" and plot.width > 400


def test_bench_openworld(served, tmp_path, capsys):
    assert main(["bench", "openworld", "--library", str(served["lib"]), "--targets", "0.05",
                 "--out", str(tmp_path / "ow.json")]) == 0
    assert "AUROC" in capsys.readouterr().out


def test_demo(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "demo")]) in (0, 1)  # 1: a base answer changed (printed)
    assert (tmp_path / "demo" / "results.json").is_file() and "summary" in capsys.readouterr().out
