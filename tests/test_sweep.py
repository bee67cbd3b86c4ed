"""`mllmcl sweep` on the two-task toy benchmark: one run folder per cell, MR-LoRA's experts trained once per
seed and shared by the task orders, sweep.json means equal to the mean of the cells' results, resumable."""
from __future__ import annotations

import json
import statistics

import pytest

from mllmcl.cl.config import cells
from mllmcl.cli.main import main
from mllmcl.eval.aggregate import aggregate, summarize
from mllmcl.eval.results import Results
from mllmcl.run.sweep import load_sweep, sweep
from mllmcl.serve.routed import RoutedModel
from test_runner import config_for, quiet


def test_summarize_is_mean_sample_std_and_t_interval():
    stats = summarize([1.0, 2.0, None, 4.0])
    assert stats["n"] == 3 and stats["mean"] == pytest.approx(7 / 3, abs=1e-4)
    assert stats["std"] == pytest.approx(statistics.stdev([1, 2, 4]), abs=1e-4)
    assert stats["ci95"] == pytest.approx(4.303 * statistics.stdev([1, 2, 4]) / 3 ** 0.5, abs=1e-3)
    assert summarize([5.0]) == {"mean": 5.0, "std": None, "n": 1, "ci95": None}
    assert summarize([None]) == {"mean": None, "std": None, "n": 0, "ci95": None}


def test_cells_cover_orders_and_seeds(toy):
    config = config_for(toy, ["seq-lora"], seed=3)
    grid = cells(config, orders=2, seeds=2)
    assert [name for name, _ in grid] == ["s3-o0", "s3-o1", "s4-o0", "s4-o1"]
    assert [(c.data.seed, c.train.seed, c.data.order) for _, c in grid] == [
        (3, 3, "random:0"), (3, 3, "random:1"), (4, 4, "random:0"), (4, 4, "random:1")]


@pytest.mark.slow
def test_a_sweep_shares_experts_across_orders_and_its_means_match_the_runs(toy, tmp_path, monkeypatch):
    from mllmcl.cl.methods import experts as experts_module

    trained = []
    real_train = experts_module.train_adapter
    monkeypatch.setattr(experts_module, "train_adapter", lambda ctx, name, *a, **k: (trained.append(name),
                                                                                     real_train(ctx, name, *a, **k))[1])
    config = config_for(toy, ["zero-shot", "seq-lora", "mr-lora"])
    summary = sweep(config, tmp_path / "sw", orders=2, seeds=1, log=quiet, progress=False)
    assert sorted(trained) == ["expert_Codes", "expert_Colors"]  # once each, for both orders
    runs = [json.loads((tmp_path / "sw" / run / "results.json").read_text()) for run in summary["runs"]]
    assert [r["tasks"] for r in runs] == [["Colors", "Codes"], ["Codes", "Colors"]]
    for method in ("seq-lora", "mr-lora"):
        mfn = [r["methods"][method]["metrics"]["MFN"] for r in runs]
        assert summary["methods"][method]["MFN"]["mean"] == pytest.approx(sum(mfn) / 2, abs=1e-4)
        assert summary["methods"][method]["MFN"]["n"] == 2
        assert set(summary["methods"][method]["final"]) == {"Colors", "Codes"}
    assert summary["methods"]["mr-lora"]["routing"]["n"] == 2
    assert load_sweep(tmp_path / "sw") == summary == aggregate_file(tmp_path / "sw")
    assert (tmp_path / "sw" / "report.md").is_file() and (tmp_path / "sw" / "spread.png").is_file()
    # resuming a finished sweep trains nothing and gives the same summary
    trained.clear()
    log = []
    assert sweep(config, tmp_path / "sw", orders=2, seeds=1, log=log.append, progress=False) == summary
    assert trained == [] and sum("finished earlier" in line for line in log) == 2
    # a cell is a run folder like any other: it serves, with the experts the sweep shares
    cell = tmp_path / "sw" / summary["runs"][1]
    model = RoutedModel.load(cell)
    assert model.names == ["Codes", "Colors"]
    assert all(e.folder.parent == tmp_path / "sw" / "experts" / "s0" for e in model.experts)


def aggregate_file(folder):
    data = json.loads((folder / "sweep.json").read_text())
    runs = [Results.load(folder / r / "results.json") for r in data["runs"]]
    assert data["methods"] == aggregate(runs)
    return data


def test_cli_sweep_dry_run_and_bad_input(toy, tmp_path, capsys):
    assert main(["sweep", "--orders", "2", "--out", str(tmp_path / "x"), "--dry-run", "setting=toy",
                 f"data.benchmark={toy}"]) == 0
    assert "s0-o1: seed 0, order random:1" in capsys.readouterr().out
    assert not (tmp_path / "x").exists()
    assert main(["sweep", "--orders", "2", "--out", str(tmp_path / "x"), "data.order=Codes,Colors"]) == 2
    assert "data.order" in capsys.readouterr().err
    assert main(["sweep", "--out", str(tmp_path / "x"), "--methods", "seq-lora,nosuch"]) == 2
    assert "nosuch" in capsys.readouterr().err and not (tmp_path / "x").exists()
