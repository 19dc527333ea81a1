"""Aggregation into summary.json (docs/protocols.md "HM and the overall row"; shape: docs/architecture.md), the
report tables (mean ± std over seeds), the headline table, the paper-protocol rule and the published numbers beside
ours."""

from __future__ import annotations

import json
import random
import statistics

import polars as pl
import pytest

from promptlab.io import write_json
from promptlab.report import (base2new_markdown, base2new_reference, base2new_report, base2new_table,
                              domain_shift_reference, few_shot_markdown, few_shot_report, few_shot_table,
                              harmonic_mean, headline_markdown, headline_table, is_paper_protocol, load_references, load_runs, markdown_table,
                              report_frames, summarize, summarize_base2new, transfer_markdown, transfer_report,
                              transfer_table, with_pm, write_tables)


def _acc(correct: int, total: int) -> dict:
    return {"correct": correct, "total": total, "acc": 100.0 * correct / total}


def _b2n(dataset, method, seed, base, new) -> dict:
    return {"protocol": "base2new", "dataset": dataset, "method": method, "seed": seed,
            "base": _acc(*base), "new": _acc(*new)}


def _ds(source, method, seed, targets: dict, protocol: str = "domain_shift") -> dict:
    return {"protocol": protocol, "dataset": source, "method": method, "seed": seed,
            "targets": {t: None if c is None else _acc(*c) for t, c in targets.items()}}


def _fs(dataset, method, seed, shots, correct, total=100) -> dict:
    return {"protocol": "few_shot", "dataset": dataset, "method": method, "seed": seed, "shots": shots,
            "test": _acc(correct, total)}


# Hand-built runs. coop on synthetic: base 90, 80 (of 200) -> 85; new 10, 20 (of 50) -> 15; HM 2*85*15/100 = 25.5
#                  coop on caltech101: base 30, 40 -> 35; new 70, 80 -> 75; HM 2*35*75/110 = 47.7272...
#   overall coop: base (85+35)/2 = 60, new (15+75)/2 = 45, HM = 2*60*45/105 = 51.4285...,
#   which is not the mean of the per-dataset HMs, (25.5 + 47.7272)/2 = 36.6136.
RUNS = [
    _b2n("synthetic", "coop", 1, (180, 200), (5, 50)),
    _b2n("synthetic", "coop", 2, (160, 200), (10, 50)),
    _b2n("caltech101", "coop", 1, (90, 300), (70, 100)),
    _b2n("caltech101", "coop", 2, (120, 300), (80, 100)),
    # zeroshot: synthetic base 50, 50 -> 50 (std 0), new 40, 60 -> 50; caltech101 base 60, 70 -> 65, new 40, 50 -> 45
    _b2n("synthetic", "zeroshot", 1, (100, 200), (20, 50)),
    _b2n("synthetic", "zeroshot", 2, (100, 200), (30, 50)),
    _b2n("caltech101", "zeroshot", 1, (180, 300), (40, 100)),
    _b2n("caltech101", "zeroshot", 2, (210, 300), (50, 100)),
    # domain shift from synthetic: sketch 40/50 = 80 and 35/50 = 70 -> 75; noise 10/50 = 20 and 15/50 = 30 -> 25
    _ds("synthetic", "coop", 1, {"synthetic_sketch": (40, 50), "synthetic_noise": (10, 50)}),
    _ds("synthetic", "coop", 2, {"synthetic_sketch": (35, 50), "synthetic_noise": (15, 50)}),
    _ds("synthetic", "zeroshot", 1, {"synthetic_sketch": (30, 50), "synthetic_noise": (20, 50)}),
    _ds("synthetic", "zeroshot", 2, {"synthetic_sketch": (30, 50), "synthetic_noise": (20, 50)}),
    # cross-dataset from synthetic: its own 45/50 = 90, 40/50 = 80 -> 85; shapes 30/60 = 50, 36/60 = 60 -> 55
    _ds("synthetic", "coop", 1, {"synthetic": (45, 50), "synthetic_shapes": (30, 60)}, "cross_dataset"),
    _ds("synthetic", "coop", 2, {"synthetic": (40, 50), "synthetic_shapes": (36, 60)}, "cross_dataset"),
    # few-shot on synthetic: coop 1 shot 20, 30 -> 25; 2 shots 40, 50 -> 45; zeroshot 35 at both (std 0)
    _fs("synthetic", "coop", 1, 1, 20), _fs("synthetic", "coop", 2, 1, 30),
    _fs("synthetic", "coop", 1, 2, 40), _fs("synthetic", "coop", 2, 2, 50),
    *[_fs("synthetic", "zeroshot", seed, k, 35) for seed in (1, 2) for k in (1, 2)],
]


def _hm(b, n):
    return 2 * b * n / (b + n)


@pytest.fixture(scope="module")
def summary() -> dict:
    return summarize(RUNS)


def test_summary_shape(summary):
    assert set(summary) == {"base2new", "domain_shift", "cross_dataset", "few_shot"}
    assert set(summary["base2new"]) == {"synthetic", "caltech101", "average"}
    for ds in ("synthetic", "caltech101", "average"):
        assert set(summary["base2new"][ds]) == {"coop", "zeroshot"}
    assert set(summary["domain_shift"]) == {"synthetic"}
    assert json.loads(json.dumps(summary)) == summary  # plain JSON, str keys


def test_per_dataset_means_and_hm_of_the_means(summary):
    coop = summary["base2new"]["synthetic"]["coop"]
    assert coop["base"] == pytest.approx(85.0, abs=1e-4)
    assert coop["new"] == pytest.approx(15.0, abs=1e-4)
    assert coop["hm"] == pytest.approx(25.5, abs=1e-4)
    cal = summary["base2new"]["caltech101"]["coop"]
    assert cal["base"] == pytest.approx(35.0, abs=1e-4)
    assert cal["new"] == pytest.approx(75.0, abs=1e-4)
    assert cal["hm"] == pytest.approx(2 * 35 * 75 / 110, abs=1e-4)
    zs = summary["base2new"]["caltech101"]["zeroshot"]
    assert (zs["base"], zs["new"]) == (pytest.approx(65.0, abs=1e-4), pytest.approx(45.0, abs=1e-4))
    assert zs["hm"] == pytest.approx(_hm(65, 45), abs=1e-4)


def test_hm_is_of_the_seed_means_not_the_mean_of_seed_hms(summary):
    # synthetic/coop: per-seed HMs are HM(90,10)=18 and HM(80,20)=32 -> mean 25; the HM of the means is 25.5
    assert statistics.fmean([_hm(90, 10), _hm(80, 20)]) == pytest.approx(25.0)
    assert summary["base2new"]["synthetic"]["coop"]["hm"] == pytest.approx(25.5, abs=1e-4)


def test_std_over_seeds_is_the_sample_stdev(summary):
    coop = summary["base2new"]["synthetic"]["coop"]
    assert coop["base_std"] == pytest.approx(statistics.stdev([90.0, 80.0]), abs=1e-4)
    assert coop["base_std"] == pytest.approx(7.0711, abs=1e-4)  # sqrt(50)
    assert coop["new_std"] == pytest.approx(statistics.stdev([10.0, 20.0]), abs=1e-4)
    assert summary["base2new"]["synthetic"]["zeroshot"]["base_std"] == 0.0


def test_seeds_and_raw_counts_are_kept(summary):
    coop = summary["base2new"]["synthetic"]["coop"]
    assert coop["seeds"] == [1, 2]
    assert coop["counts"] == {"1": {"base": [180, 200], "new": [5, 50]},
                              "2": {"base": [160, 200], "new": [10, 50]}}


def test_average_row_is_hm_of_dataset_averaged_base_and_new(summary):
    avg = summary["base2new"]["average"]["coop"]
    assert avg["base"] == pytest.approx(60.0, abs=1e-4)
    assert avg["new"] == pytest.approx(45.0, abs=1e-4)
    assert avg["hm"] == pytest.approx(2 * 60 * 45 / 105, abs=1e-4)  # 51.4286
    assert avg["datasets"] == 2
    mean_of_hms = statistics.fmean([25.5, 2 * 35 * 75 / 110])  # 36.61: the wrong convention
    assert abs(avg["hm"] - mean_of_hms) > 10
    zs = summary["base2new"]["average"]["zeroshot"]
    assert (zs["base"], zs["new"]) == (pytest.approx(57.5, abs=1e-4), pytest.approx(47.5, abs=1e-4))
    assert zs["hm"] == pytest.approx(_hm(57.5, 47.5), abs=1e-4)


def test_summary_does_not_depend_on_run_order(summary):
    shuffled = RUNS[:]
    random.Random(0).shuffle(shuffled)
    assert summarize(shuffled) == summary


def test_single_seed_has_zero_std():
    s = summarize_base2new([_b2n("dtd", "coop", 3, (1, 4), (3, 4))])
    assert s["dtd"]["coop"]["base"] == 25.0 and s["dtd"]["coop"]["new"] == 75.0
    assert s["dtd"]["coop"]["hm"] == 37.5
    assert s["dtd"]["coop"]["base_std"] == 0.0 and s["dtd"]["coop"]["new_std"] == 0.0
    assert s["average"]["coop"] == {"base": 25.0, "new": 75.0, "hm": 37.5, "datasets": 1}


def test_ties_round_as_the_exact_mean_and_std_do():
    # 100 * (23 + 91 + 430 + 14) / 576 / 4 = 24.21875 and the std of 100 * (49, 60, 42, 48) / 64 = 11.71875 are
    # 4-decimal ties: statistics' exact fmean and stdev give them exactly (-> 24.2188, 11.7188, half to even); a
    # float sum off in the last bit, as polars' .mean() and .std() are, rounds them down to 24.2187, 11.7187
    runs = [_fs("d", "m", seed, 1, c, 576) for seed, c in enumerate((23, 91, 430, 14))]
    runs += [_fs("d", "m", seed, 2, c, 64) for seed, c in enumerate((49, 60, 42, 48))]
    row = summarize(runs)["few_shot"]["d"]["m"]
    assert (row["1"], row["2_std"]) == (24.2188, 11.7188)


def test_no_runs_give_empty_sections():
    assert summarize([]) == {"base2new": {}, "domain_shift": {}, "cross_dataset": {}, "few_shot": {}}


def test_domain_shift_summary(summary):
    ds = summary["domain_shift"]
    assert set(ds["synthetic"]) == {"coop", "zeroshot"}
    coop = ds["synthetic"]["coop"]
    assert coop["synthetic_sketch"] == pytest.approx(75.0, abs=1e-4)
    assert coop["synthetic_noise"] == pytest.approx(25.0, abs=1e-4)
    assert coop["synthetic_sketch_std"] == pytest.approx(statistics.stdev([80.0, 70.0]), abs=1e-4)
    assert coop["synthetic_noise_std"] == pytest.approx(statistics.stdev([20.0, 30.0]), abs=1e-4)
    assert {k for k in coop if not k.endswith("_std")} == {"synthetic_sketch", "synthetic_noise"}
    assert ds["synthetic"]["zeroshot"] == {"synthetic_sketch": 60.0, "synthetic_sketch_std": 0.0,
                                           "synthetic_noise": 40.0, "synthetic_noise_std": 0.0}


def test_protocols_do_not_mix():
    full = summarize(RUNS)
    for protocol in full:
        alone = summarize([r for r in RUNS if r["protocol"] == protocol])
        assert alone == {k: full[k] if k == protocol else {} for k in full}


def test_cross_dataset_summary_and_closed_vocabulary_nulls(summary):
    assert summary["cross_dataset"] == {"synthetic": {"coop": {
        "synthetic": 85.0, "synthetic_std": pytest.approx(statistics.stdev([90.0, 80.0]), abs=1e-4),
        "synthetic_shapes": 55.0, "synthetic_shapes_std": pytest.approx(statistics.stdev([50.0, 60.0]), abs=1e-4)}}}
    probe = [_ds("synthetic", "linear_probe", s, {"synthetic": (c, 50), "synthetic_shapes": None}, "cross_dataset")
             for s, c in ((1, 40), (2, 30))]
    row = summarize(probe)["cross_dataset"]["synthetic"]["linear_probe"]
    assert row == {"synthetic": 70.0, "synthetic_std": pytest.approx(14.1421, abs=1e-4),
                   "synthetic_shapes": None, "synthetic_shapes_std": None}
    df = transfer_report(summarize(probe), probe, "cross_dataset")
    assert "| linear_probe | 2 | 70.00 ± 14.14 |" in transfer_markdown(df)  # the null column is dropped


def test_few_shot_summary_by_hand(summary):
    fs = summary["few_shot"]["synthetic"]
    assert fs["coop"] == {"1": 25.0, "1_std": pytest.approx(7.0711, abs=1e-4),
                          "2": 45.0, "2_std": pytest.approx(7.0711, abs=1e-4)}
    assert fs["zeroshot"] == {"1": 35.0, "1_std": 0.0, "2": 35.0, "2_std": 0.0}
    assert list(fs["coop"]) == ["1", "1_std", "2", "2_std"]  # shots in increasing order (16 after 8, not 1)
    wide = summarize([_fs("d", "m", 1, k, 10) for k in (16, 2, 8)])["few_shot"]["d"]["m"]
    assert [k for k in wide if not k.endswith("_std")] == ["2", "8", "16"]


def test_few_shot_tables(summary):
    df = few_shot_report(summary, RUNS)
    assert df.columns == ["dataset", "method", "seeds", "1", "1_std", "2", "2_std"]
    assert df.rows()[0] == ("synthetic", "coop", 2, 25.0, pytest.approx(7.0711, abs=1e-4), 45.0,
                            pytest.approx(7.0711, abs=1e-4))
    md = few_shot_markdown(df)
    assert "| method | seeds | 1 shot | 2 shots |" in md and "| coop | 2 | 25.00 ± 7.07 | 45.00 ± 7.07 |" in md
    long = few_shot_table(summary)
    assert long.filter(pl.col("method") == "coop").select("shots", "acc").rows() == [(1, 25.0), (2, 45.0)]


def test_load_runs_reads_every_json_under_the_dir(tmp_path, summary):
    for r in RUNS:
        shots = [f"shots{r['shots']}"] if "shots" in r else []
        write_json(tmp_path.joinpath(r["method"], r["protocol"], r["dataset"], *shots, f"seed{r['seed']}.json"), r)
    runs = load_runs(tmp_path)
    assert len(runs) == len(RUNS)
    assert summarize(runs) == summary


# --- tables ----------------------------------------------------------------------------------------------------------


def test_base2new_table(summary):
    df = base2new_table(summary)
    assert df.columns == ["dataset", "method", "base", "new", "hm"]
    assert df.select("dataset", "method").rows() == [
        ("caltech101", "coop"), ("caltech101", "zeroshot"), ("synthetic", "coop"), ("synthetic", "zeroshot"),
        ("average", "coop"), ("average", "zeroshot")]
    row = df.filter((pl.col("dataset") == "synthetic") & (pl.col("method") == "coop")).row(0, named=True)
    assert row == {"dataset": "synthetic", "method": "coop", "base": 85.0, "new": 15.0, "hm": 25.5}
    avg = df.filter((pl.col("dataset") == "average") & (pl.col("method") == "coop")).row(0, named=True)
    assert avg["hm"] == pytest.approx(51.4286, abs=1e-4)


def test_domain_shift_table(summary):
    df = transfer_table(summary, "domain_shift")
    assert df.columns == ["source", "method", "target", "acc"]
    assert sorted(df.rows()) == [
        ("synthetic", "coop", "synthetic_noise", 25.0), ("synthetic", "coop", "synthetic_sketch", 75.0),
        ("synthetic", "zeroshot", "synthetic_noise", 40.0), ("synthetic", "zeroshot", "synthetic_sketch", 60.0)]


def test_markdown_table_by_hand():
    df = pl.DataFrame({"dataset": ["dtd", "eurosat"], "method": ["coop", "zeroshot"], "base": [85.0, 2 / 3],
                       "n": [3, 10]})
    assert markdown_table(df) == (
        "| dataset | method | base | n |\n"
        "|---|---|---|---|\n"
        "| dtd | coop | 85.00 | 3 |\n"
        "| eurosat | zeroshot | 0.67 | 10 |\n")


def test_markdown_of_the_base2new_table(summary):
    md = markdown_table(base2new_table(summary)).splitlines()
    assert md[0] == "| dataset | method | base | new | hm |"
    assert md[1] == "|---|---|---|---|---|"
    assert len(md) == 2 + 6
    assert "| synthetic | coop | 85.00 | 15.00 | 25.50 |" in md
    assert "| caltech101 | coop | 35.00 | 75.00 | 47.73 |" in md
    assert "| average | coop | 60.00 | 45.00 | 51.43 |" in md


def test_closed_vocabulary_method_reports_base_only():
    """A linear probe cannot score new classes: its runs carry "new": null, and so do its new and HM, in the
    per-dataset rows and in the average; the markdown table shows a dash."""
    runs = [{**_b2n("synthetic", "linear_probe", s, (c, 200), (0, 1)), "new": None}
            for s, c in ((1, 100), (2, 120))] + [_b2n("synthetic", "coop", 1, (180, 200), (5, 50))]
    out = summarize_base2new(runs)
    row = out["synthetic"]["linear_probe"]
    assert row["base"] == pytest.approx(55.0) and row["new"] is None and row["hm"] is None
    assert row["counts"]["1"] == {"base": [100, 200], "new": None}
    assert out["average"]["linear_probe"] == {"base": 55.0, "new": None, "hm": None, "datasets": 1}
    assert out["average"]["coop"]["hm"] == pytest.approx(2 * 90 * 10 / 100)
    md = markdown_table(base2new_table({"base2new": out}))
    assert "| synthetic | linear_probe | 55.00 | — | — |" in md


# --- report tables: mean ± std over seeds, methods as rows -----------------------------------------------------------


def test_base2new_report_means_stds_and_seed_counts(summary):
    df = base2new_report(summary)
    assert df.columns == ["dataset", "method", "seeds", "base", "base_std", "new", "new_std", "hm", "hm_std"]
    assert df.select("dataset", "method").rows()[:2] == [("average", "coop"), ("average", "zeroshot")]
    coop = df.filter((pl.col("dataset") == "synthetic") & (pl.col("method") == "coop")).row(0, named=True)
    assert coop["seeds"] == 2 and (coop["base"], coop["new"], coop["hm"]) == (85.0, 15.0, 25.5)
    assert coop["base_std"] == pytest.approx(statistics.stdev([90.0, 80.0]), abs=1e-4)
    assert coop["new_std"] == pytest.approx(statistics.stdev([10.0, 20.0]), abs=1e-4)
    assert coop["hm_std"] == pytest.approx(statistics.stdev([_hm(90, 10), _hm(80, 20)]), abs=1e-4)  # 18, 32


def test_report_stds_are_the_summarys(summary):
    df = base2new_report(summary)
    for dataset in ("synthetic", "caltech101"):
        for method in ("coop", "zeroshot"):
            row = df.filter((pl.col("dataset") == dataset) & (pl.col("method") == method)).row(0, named=True)
            assert row["base_std"] == summary["base2new"][dataset][method]["base_std"]
            assert row["new_std"] == summary["base2new"][dataset][method]["new_std"]


def test_average_std_is_over_per_seed_dataset_averages(summary):
    # coop per seed, averaged over synthetic and caltech101: base (90+30)/2 = 60 and (80+40)/2 = 60 -> std 0;
    # new (10+70)/2 = 40 and (20+80)/2 = 50 -> std 7.07; HM per seed 48 and 54.55
    avg = base2new_report(summary).filter((pl.col("dataset") == "average") & (pl.col("method") == "coop")).row(
        0, named=True)
    assert (avg["base"], avg["new"]) == (60.0, 45.0) and avg["seeds"] == 2
    assert avg["base_std"] == 0.0
    assert avg["new_std"] == pytest.approx(statistics.stdev([40.0, 50.0]), abs=1e-4)
    assert avg["hm_std"] == pytest.approx(statistics.stdev([_hm(60, 40), _hm(60, 50)]), abs=1e-4)


def test_average_uses_the_seeds_every_dataset_has():
    runs = [_b2n("dtd", "coop", 1, (1, 2), (1, 2)), _b2n("dtd", "coop", 2, (2, 2), (2, 2)),
            _b2n("eurosat", "coop", 1, (1, 2), (1, 2))]
    avg = base2new_report(summarize(runs)).filter(pl.col("dataset") == "average").row(0, named=True)
    assert avg["seeds"] == 1 and avg["base_std"] == 0.0


def test_base2new_markdown_shows_mean_pm_std(summary):
    md = base2new_markdown(base2new_report(summary))
    assert md.startswith("## Average over 2 datasets (caltech101, synthetic)\n\n| method | seeds | base | new | HM |\n")
    assert "| coop | 2 | 85.00 ± 7.07 | 15.00 ± 7.07 | 25.50 ± 9.90 |" in md
    assert "| coop | 2 | 60.00 ± 0.00 | 45.00 ± 7.07 | 51.43 ± 4.63 |" in md  # the average
    assert md.index("## Average") < md.index("## caltech101") < md.index("## synthetic")


def test_one_dataset_gives_the_average_table_only():
    md = base2new_markdown(base2new_report(summarize(RUNS[:2])))
    assert md.count("| coop |") == 1 and md.startswith("## Average over 1 dataset (synthetic)")


def test_closed_vocabulary_method_shows_dashes_with_std():
    runs = [{**_b2n("synthetic", "linear_probe", s, (c, 200), (0, 1)), "new": None} for s, c in ((1, 100), (2, 120))]
    df = base2new_report(summarize(runs))
    assert df.filter(pl.col("dataset") == "synthetic")["new_std"].to_list() == [None]
    assert "| linear_probe | 2 | 55.00 ± 7.07 | — | — |" in base2new_markdown(df)


def test_domain_shift_report_one_column_per_target(summary):
    runs = RUNS + [_ds("synthetic", "cocoop", 1, {"synthetic": (9, 10), "synthetic_sketch": (1, 2)})]
    df = transfer_report(summarize(runs), runs, "domain_shift")
    assert df.columns == ["source", "method", "seeds", "synthetic", "synthetic_std", "synthetic_noise",
                          "synthetic_noise_std", "synthetic_sketch", "synthetic_sketch_std"]  # the source first
    assert df["method"].to_list() == ["cocoop", "coop", "zeroshot"] and df["seeds"].to_list() == [1, 2, 2]
    md = transfer_markdown(df)
    assert "| method | seeds | synthetic (source) | synthetic_noise | synthetic_sketch |" in md
    assert "| cocoop | 1 | 90.00 ± 0.00 | — | 50.00 ± 0.00 |" in md
    assert "| coop | 2 | — | 25.00 ± 7.07 | 75.00 ± 7.07 |" in md


def test_empty_reports():
    assert base2new_report(summarize([])).height == 0 and transfer_report(summarize([]), [], "domain_shift").height == 0


def test_with_pm_pairs_columns_with_their_std():
    df = pl.DataFrame({"m": ["a", "b"], "x": [1.0, None], "x_std": [0.5, None], "n": [2, 3]})
    assert with_pm(df).rows() == [("a", "1.00 ± 0.50", 2), ("b", None, 3)]


def test_write_tables(tmp_path, summary):
    frames = report_frames(summary, RUNS)
    write_tables(summary, frames, tmp_path / "tables", tmp_path / "plots")
    for protocol, df in frames.items():
        assert pl.read_csv(tmp_path / f"tables/{protocol}.csv").equals(df)
        assert (tmp_path / f"tables/{protocol}.md").read_text().startswith("# ")
    assert pl.read_csv(tmp_path / "plots/base2new.csv").equals(base2new_table(summary))  # dvc plots data
    assert pl.read_csv(tmp_path / "plots/few_shot.csv").equals(few_shot_table(summary))
    assert pl.read_csv(tmp_path / "plots/cross_dataset.csv").equals(transfer_table(summary, "cross_dataset"))
    assert "| coop | 2 | 85.00 ± 7.07 |" in (tmp_path / "tables/base2new.md").read_text()
    assert "| zeroshot | 2 | 40.00 ± 0.00 | 60.00 ± 0.00 |" in (tmp_path / "tables/domain_shift.md").read_text()
    assert "| coop | 2 | 85.00 ± 7.07 | 55.00 ± 7.07 |" in (tmp_path / "tables/cross_dataset.md").read_text()
    assert "| zeroshot | 2 | 35.00 ± 0.00 | 35.00 ± 0.00 |" in (tmp_path / "tables/few_shot.md").read_text()
    assert pl.read_csv(tmp_path / "tables/headline.csv").equals(headline_table(summary))
    assert headline_markdown(summary) in (tmp_path / "tables/headline.md").read_text()


# --- the headline table -----------------------------------------------------------------------------------------------


def test_headline_values_equal_the_summary(summary):
    """Each cell read back from summary.json independently: the base-to-new average row, the mean over the
    transfer targets other than the source, the few-shot accuracy at the largest shot count."""
    table = {r["method"]: r for r in headline_table(summary).iter_rows(named=True)}
    assert sorted(table) == ["coop", "zeroshot"]
    for method, row in table.items():
        average = summary["base2new"]["average"][method]
        assert (row["base"], row["new"], row["hm"]) == (average["base"], average["new"], average["hm"])
        for protocol in ("domain_shift", "cross_dataset"):
            accs = summary[protocol]["synthetic"].get(method)
            targets = [v for t, v in (accs or {}).items() if not t.endswith("_std") and t != "synthetic"]
            assert row[protocol] == (round(statistics.fmean(targets), 4) if targets else None)
        assert row["few_shot"] == summary["few_shot"]["synthetic"][method]["2"]


def test_headline_by_hand(summary):
    # coop: base2new 60 / 45 / 51.4286; domain shift (75 + 25) / 2; cross-dataset 55 (the source's 85 left out);
    # few-shot at 2 shots 45. zeroshot: base (50 + 65) / 2, new (50 + 45) / 2; no cross-dataset run.
    assert headline_table(summary).rows() == [
        ("coop", 60.0, 45.0, pytest.approx(_hm(60, 45), abs=1e-4), 50.0, 55.0, 45.0),
        ("zeroshot", 57.5, 47.5, pytest.approx(_hm(57.5, 47.5), abs=1e-4), 50.0, None, 35.0)]
    text = headline_markdown(summary)
    assert text.splitlines()[:3] == ["| method | base | new | HM | domain shift | cross-dataset | few-shot (2 shots) |",
                                     "|---|---|---|---|---|---|---|",
                                     "| coop | 60.00 | 45.00 | 51.43 | 50.00 | 55.00 | 45.00 |"]


def test_headline_mean_is_null_when_a_target_cannot_be_scored():
    runs = [_ds("synthetic", m, s, {"synthetic": (40, 50), "synthetic_sketch": (20, 50),
                                    "synthetic_shapes": None if m == "linear_probe" else (10, 50)})
            for m in ("coop", "linear_probe") for s in (1, 2)]
    # coop (40 + 20) / 2; linear_probe null, not its sketch accuracy alone
    assert headline_table(summarize(runs)).rows() == [("coop", 30.0), ("linear_probe", None)]


def test_headline_drops_protocols_that_did_not_run():
    runs = [r for r in RUNS if r["protocol"] == "base2new"]
    assert headline_table(summarize(runs)).columns == ["method", "base", "new", "hm"]
    assert headline_table(summarize([])).height == 0 and headline_markdown(summarize([])) == ""


# --- the paper protocol and the published numbers ---------------------------------------------------------------------

ELEVEN = ["imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101", "fgvc_aircraft",
          "sun397", "dtd", "eurosat", "ucf101"]


def test_paper_protocol_rule():
    refs = load_references()
    assert is_paper_protocol("ViT-B-16", "openai", ELEVEN, 16, refs)
    assert is_paper_protocol("ViT-B-16-quickgelu", "openai", ELEVEN[::-1])  # any order; refs default to the YAML
    assert not is_paper_protocol("promptlab-tiny", "models/tiny_clip/open_clip_model.safetensors", ["synthetic"])
    assert not is_paper_protocol("ViT-B-32", "openai", ELEVEN)
    assert not is_paper_protocol("ViT-B-16", "laion2b_s34b_b88k", ELEVEN)
    assert not is_paper_protocol("ViT-B-16", "/ckpt/vit_b16_openai.pt", ELEVEN)  # a path is not the tag
    assert not is_paper_protocol("ViT-B-16", "openai", ELEVEN[:-1])
    assert not is_paper_protocol("ViT-B-16", "openai", ELEVEN + ["synthetic"])
    assert not is_paper_protocol("ViT-B-16", "openai", ELEVEN, shots=4)


def test_reference_numbers_are_the_published_ones():
    refs = load_references()
    b2n = {m: (r["base"], r["new"], r["hm"]) for m, r in refs["base2new"].items()}
    assert b2n == {"zeroshot": (69.34, 74.22, 71.70), "coop": (82.69, 63.22, 71.66),
                   "cocoop": (80.47, 71.69, 75.83), "prograd": (82.48, 70.75, 76.16),
                   "kgcoop": (80.73, 73.60, 77.00), "maple": (82.28, 75.14, 78.55),
                   "promptsrc": (84.26, 76.10, 79.97)}
    for base, new, hm in b2n.values():  # each published HM is the HM of its base and new
        assert _hm(base, new) == pytest.approx(hm, abs=0.011)
    order = ["imagenet_v2", "imagenet_sketch", "imagenet_a", "imagenet_r"]
    shift = {m: [r[t] for t in order] for m, r in refs["domain_shift"]["methods"].items()}
    assert shift == {"zeroshot": [60.83, 46.15, 47.77, 73.96], "coop": [64.20, 47.99, 49.71, 75.21],
                     "cocoop": [64.07, 48.75, 50.63, 76.18]}
    assert refs["domain_shift"]["source"] == "imagenet" and sorted(refs["protocol"]["datasets"]) == sorted(ELEVEN)
    cited = [r["paper"] for r in refs["base2new"].values()] + [
        r["paper"] for r in refs["domain_shift"]["methods"].values()]
    assert set(cited) <= set(refs["papers"])


REFS = {"base2new": {"coop": {"label": "CoOp", "base": 80.0, "new": 60.0, "hm": 68.57, "paper": "p"},
                     "maple": {"label": "MaPLe", "base": 82.0, "new": 75.0, "hm": 78.34, "paper": "q"}},
        "domain_shift": {"source": "synthetic", "methods": {
            "coop": {"label": "CoOp", "synthetic_sketch": 70.0, "imagenet_r": 70.0, "paper": "p"}}}}


def test_base2new_reference_differences(summary):
    df = base2new_reference(summary, REFS)  # our coop average: base 60, new 45, HM 51.4286
    assert df.columns == ["method", "base ours", "base paper", "base Δ", "new ours", "new paper", "new Δ",
                          "hm ours", "hm paper", "hm Δ", "from"]
    coop, maple = df.rows(named=True)
    assert (coop["method"], coop["base ours"], coop["base paper"], coop["base Δ"]) == ("CoOp", 60.0, 80.0, -20.0)
    assert coop["new Δ"] == pytest.approx(-15.0) and coop["hm Δ"] == pytest.approx(51.4286 - 68.57, abs=1e-4)
    assert (maple["base ours"], maple["base paper"], maple["base Δ"], maple["from"]) == (None, 82.0, None, "q")


def test_domain_shift_reference_differences(summary):
    df = domain_shift_reference(summary, REFS)  # our coop on synthetic -> synthetic_sketch: 75
    assert df.rows() == [("CoOp", "synthetic_sketch", 75.0, 70.0, 5.0, "p"),
                         ("CoOp", "imagenet_r", None, 70.0, None, "p")]


def test_harmonic_mean_by_hand():
    assert harmonic_mean(80, 60) == pytest.approx(2 * 80 * 60 / 140)
    assert harmonic_mean(80, 60) == pytest.approx(68.5714285714)
    assert harmonic_mean(50, 50) == pytest.approx(50.0)
    assert harmonic_mean(100, 25) == pytest.approx(40.0)  # 2*100*25/125


def test_harmonic_mean_is_symmetric_and_below_the_arithmetic_mean():
    assert harmonic_mean(72.5, 31.0) == pytest.approx(harmonic_mean(31.0, 72.5))
    assert harmonic_mean(72.5, 31.0) < (72.5 + 31.0) / 2


def test_harmonic_mean_with_a_zero():
    assert harmonic_mean(90, 0) == 0.0
    assert harmonic_mean(0, 0) == 0.0
