"""The comparison with the published MLLM-CL table: row matching, normalisation by the zero-shot-to-Oracle room,
Spearman's rho, sweep folders, and `mllmcl report --against paper`."""
from __future__ import annotations

import copy
import statistics

import pytest

from mllmcl.cli.main import main
from mllmcl.eval.results import Results
from mllmcl.report import load_runs
from mllmcl.report.paper import compare, comparison_markdown, paper_row, paper_tables, spearman
from tests.test_report import ZERO_SHOT, make_results, write_run


def test_our_methods_map_to_the_papers_rows():
    assert paper_row("seq-lora") == "LoRA-FT" and paper_row("seq-lora+replay") == "LoRA-FT*"
    assert paper_row("replay") == "LoRA-FT*" and paper_row("o-lora+replay") == "O-LoRA*"
    assert paper_row("mr-lora[mllm]") == "MR-LoRA" and paper_row("ewc") is None and paper_row("lwf+replay") is None


def test_spearman_ranks_with_ties_and_refuses_too_little():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3], [1, 1, 2]) == pytest.approx(0.8660254)  # average ranks for the tie
    assert spearman([1, 2], [1, 2]) is None and spearman([1, 2, 3], [5, 5, 5]) is None


def test_mfn_and_bwt_are_normalised_by_the_room_between_zero_shot_and_the_oracle():
    results = Results.model_validate(make_results())
    comparison = compare([results])
    row = next(r for r in comparison["rows"] if r["label"] == "seq-lora")
    zs, oracle = statistics.fmean(ZERO_SHOT), statistics.fmean([92.0, 87.0, 82.0])
    mfn, bwt = results.methods["seq-lora"].metrics["MFN"], results.methods["seq-lora"].metrics["BWT"]
    assert row["ours"]["nMFN"]["mean"] == pytest.approx((mfn - zs) / (oracle - zs))
    assert row["ours"]["nBWT"]["mean"] == pytest.approx(bwt / (oracle - zs))
    paper = paper_tables()["dcl"]["rows"]
    room = paper["Oracle"]["MFN"] - paper["Zero-shot"]["MFN"]
    assert row["paper"]["nMFN"] == pytest.approx((paper["LoRA-FT"]["MFN"] - paper["Zero-shot"]["MFN"]) / room)
    assert comparison["zero_shot_over_upper"]["ours"]["mean"] == pytest.approx(zs / oracle)
    # ranked: seq-lora and mr-lora (zero-shot and Oracle bound the table, they are not ranked)
    assert comparison["spearman_mfn"]["n"] == 2 and comparison["spearman_mfn"]["rho"] is None


def test_a_sweep_folder_gives_one_run_per_cell_and_the_spread_over_them(tmp_path):
    other = make_results()
    other["methods"]["seq-lora"]["metrics"] = {**other["methods"]["seq-lora"]["metrics"], "MFN": 30.0}
    write_run(tmp_path / "sweep" / "runs" / "a", make_results())
    write_run(tmp_path / "sweep" / "runs" / "b", other)
    runs = load_runs([tmp_path / "sweep"])
    assert len(runs) == 2
    row = next(r for r in compare(runs)["rows"] if r["label"] == "seq-lora")
    ours = [make_results()["methods"]["seq-lora"]["metrics"]["MFN"], 30.0]
    assert row["ours"]["MFN"] == {"mean": pytest.approx(statistics.fmean(ours)),
                                  "std": pytest.approx(statistics.stdev(ours)), "n": 2}


def test_the_ability_table_uses_mr_lora_as_its_upper_reference():
    acl = copy.deepcopy(make_results())
    acl["run"]["setting"] = "acl"
    comparison = compare([Results.model_validate(acl)])
    assert comparison["upper"] == "mr-lora"
    assert "MR-LoRA (the paper's ACL Oracle is not in the data)" in comparison_markdown(comparison)


def test_every_published_row_with_per_task_accuracies_has_their_mean_as_its_mfn():
    checked = 0
    for setting, table in paper_tables().items():
        if not isinstance(table, dict):
            continue  # the source line
        for name, row in table["rows"].items():
            if "final" in row:
                assert list(row["final"]) == table["tasks"], (setting, name)
                assert statistics.fmean(row["final"].values()) == pytest.approx(row["MFN"], abs=0.006), (setting, name)
                checked += 1
    assert checked >= 17  # DCL zero-shot, every ACL row


def test_the_ability_table_ranks_the_baselines_both_tables_have():
    acl = copy.deepcopy(make_results())
    acl["run"]["setting"] = "acl"
    for label, mfn in (("o-lora", 52.0), ("sefe", 60.0), ("hide-llava", 20.0)):
        acl["methods"][label] = copy.deepcopy(acl["methods"]["seq-lora"])
        acl["methods"][label]["metrics"] = {**acl["methods"][label]["metrics"], "MFN": mfn}
    comparison = compare([Results.model_validate(acl)])
    rows = {r["label"]: r for r in comparison["rows"]}
    assert rows["o-lora"]["paper"]["MFN"] == 37.16 and rows["hide-llava"]["paper_row"] == "HiDe-LLaVA"
    ranked = ["hide-llava", "seq-lora", "o-lora", "sefe", "mr-lora"]  # the paper's order by MFN, ACL
    assert [rows[k]["paper"]["MFN"] for k in ranked] == sorted(rows[k]["paper"]["MFN"] for k in ranked)
    ours = [rows[k]["ours"]["MFN"]["mean"] for k in ranked]
    assert comparison["spearman_mfn"] == {"rho": pytest.approx(spearman([1, 2, 3, 4, 5], ours)), "n": 5}
    assert "ϕ-DPO" in comparison["source"] and "Spearman ρ of MFN over the 5 methods" in comparison_markdown(comparison)


def test_report_against_paper_prints_and_writes_the_comparison(tmp_path, capsys):
    run = write_run(tmp_path / "run", make_results())
    assert main(["report", str(run), "--against", "paper", "--out", str(tmp_path / "cmp")]) == 0
    printed = capsys.readouterr().out
    assert "| seq-lora | LoRA-FT | 53.00 |" in printed and "Spearman" in printed
    assert (tmp_path / "cmp" / "against_paper.md").read_text().strip() == printed.strip()
    assert not (run / "report.md").exists()  # the comparison only, nothing else written
