"""The report's PNG figures (real images, byte-identical reruns), training curves averaged over seeds from
DVCLive TSVs, the results page, and the report stage end to end on hand-built runs."""

from __future__ import annotations

import re
import runpy
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image

from promptlab.io import write_json
from promptlab.report import load_references, report_frames, summarize
from promptlab.report_figures import (BAR_SIZE, CURVE_SIZE, DPI, grouped_bars, load_curves, mean_curves,
                                      plot_curves, results_page, split_epoch_curves, trains_in_epochs,
                                      write_figures)
from test_report import ELEVEN, RUNS

REPO = Path(__file__).resolve().parents[1]
PARAMS = {"model": {"name": "promptlab-tiny", "pretrained": "models/tiny_clip/open_clip_model.safetensors"},
          "data": {"datasets": ["synthetic", "caltech101"], "shots": 16, "seeds": [1, 2]},
          "eval": {"domain_shift": {"source": "synthetic", "targets": ["synthetic_sketch", "synthetic_noise"]},
                   "cross_dataset": {"source": "synthetic", "targets": ["synthetic_shapes"]},
                   "few_shot": {"datasets": ["synthetic"], "shots": [1, 2]}},
          "coop": {"epochs": 10}, "zeroshot": {"template": "dataset"}, "cocoop": {"epochs": 1}}


def _png(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        assert im.format == "PNG"
        return np.asarray(im.convert("RGB"))


def _px(size: tuple[float, float]) -> tuple[int, int]:
    return round(size[0] * DPI), round(size[1] * DPI)


def _not_blank(img: np.ndarray) -> None:
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 20  # bars/lines, text and anti-aliasing, not one colour
    assert (img < 128).any() and (img > 200).any()


def test_bar_figure_is_a_real_image_and_reruns_give_identical_bytes(tmp_path):
    series = {"base": ([80.0, 60.0], [1.0, 2.0]), "new": ([70.0, None], [0.5, None])}  # None: no bar
    grouped_bars(["coop", "linear_probe"], series, "title", tmp_path / "a.png")
    grouped_bars(["coop", "linear_probe"], series, "title", tmp_path / "b.png")
    img = _png(tmp_path / "a.png")
    assert img.shape[1::-1] == _px(BAR_SIZE) == (900, 360)
    _not_blank(img)
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    assert b"Software" not in (tmp_path / "a.png").read_bytes()  # no matplotlib version/date in the metadata


def _write_tsv(root: Path, method: str, protocol: str, dataset: str, seed: int, metric: str, values: list) -> None:
    path = root / method / protocol / dataset / f"seed{seed}" / "plots/metrics/train" / f"{metric}.tsv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"step\t{metric}\n" + "".join(f"{i}\t{v}\n" for i, v in enumerate(values)))


@pytest.fixture()
def curves_dir(tmp_path) -> Path:
    root = tmp_path / "curves"
    _write_tsv(root, "coop", "base2new", "synthetic", 1, "loss", [2.0, 1.0, 0.5])
    _write_tsv(root, "coop", "base2new", "synthetic", 2, "loss", [4.0, 3.0])  # a shorter run
    _write_tsv(root, "coop", "base2new", "synthetic", 1, "acc", [10.0, 20.0, 30.0])
    _write_tsv(root, "coop", "base2new", "synthetic", 2, "acc", [30.0, 40.0, 50.0])
    _write_tsv(root, "coop", "base2new", "synthetic", 1, "lr", [1e-5, 2e-3, 1e-3])  # not a curve we draw
    for seed in (1, 2):
        _write_tsv(root, "zeroshot", "base2new", "synthetic", seed, "loss", [0.0])  # nothing trained: one step
        _write_tsv(root, "zeroshot", "base2new", "synthetic", seed, "acc", [45.0])
        _write_tsv(root, "coop", "domain_shift", "synthetic", seed, "loss", [1.0, 0.5])
        _write_tsv(root, "coop", "domain_shift", "synthetic", seed, "acc", [50.0, 60.0])
    few_shot = root / "coop/few_shot/synthetic/shots1/seed1/plots/metrics/train/loss.tsv"  # not drawn as curves
    few_shot.parent.mkdir(parents=True)
    few_shot.write_text("step\tloss\n0\t9.0\n1\t8.0\n")
    return root


def test_load_curves_reads_every_seed_and_metric(curves_dir):
    df = load_curves(curves_dir)
    assert set(df["metric"]) == {"loss", "acc"}  # lr is left out
    coop = df.filter((pl.col("method") == "coop") & (pl.col("protocol") == "base2new"))
    assert sorted(set(coop["seed"])) == [1, 2] and coop.height == 3 + 2 + 3 + 3
    assert load_curves(curves_dir / "missing").height == 0


def test_curves_are_averaged_over_seeds(curves_dir):
    mean = mean_curves(load_curves(curves_dir)).filter(
        (pl.col("method") == "coop") & (pl.col("protocol") == "base2new"))
    loss = mean.filter(pl.col("metric") == "loss")
    assert loss["step"].to_list() == [0, 1, 2]
    assert loss["mean"].to_list() == [3.0, 2.0, 0.5]  # step 2: seed 1 only
    assert loss["seeds"].to_list() == [2, 2, 1]
    assert mean.filter(pl.col("metric") == "acc")["mean"].to_list() == [20.0, 30.0, 40.0]


def test_curve_figure_is_a_real_image_and_deterministic(curves_dir, tmp_path):
    mean = mean_curves(load_curves(curves_dir)).filter(pl.col("protocol") == "base2new")
    colours = {"coop": "C0", "zeroshot": "C1"}
    for name in ("a.png", "b.png"):
        plot_curves(mean, colours, "curves", tmp_path / name)
    img = _png(tmp_path / "a.png")
    assert img.shape[1::-1] == _px(CURVE_SIZE) == (1000, 360)
    _not_blank(img)
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()


def _linear_probe_search(root: Path) -> None:
    """A linear probe's logged steps: one per value of C tried (val accuracy), not epochs."""
    for seed in (1, 2):
        _write_tsv(root, "linear_probe", "base2new", "synthetic", seed, "loss", [0.9, 0.4, 0.2, 0.3, 0.25])
        _write_tsv(root, "linear_probe", "base2new", "synthetic", seed, "acc", [40.0, 55.0, 60.0, 58.0, 60.0])


def test_only_methods_with_epochs_count_as_epoch_curves():
    assert trains_in_epochs("coop") and trains_in_epochs("cocoop") and trains_in_epochs("pbprompt")
    assert not trains_in_epochs("linear_probe") and not trains_in_epochs("zeroshot")
    assert not trains_in_epochs("no_such_method")


def test_linear_probe_search_steps_are_split_off_the_epoch_axis(curves_dir):
    _linear_probe_search(curves_dir)
    mean = mean_curves(load_curves(curves_dir)).filter(pl.col("protocol") == "base2new")
    epochs, searches = split_epoch_curves(mean)
    assert sorted(set(epochs["method"])) == ["coop"]  # zeroshot (one step) and linear_probe (C search) left out
    assert searches == ["linear_probe"]
    assert epochs.height == mean.filter(pl.col("method") == "coop").height


def test_curve_figure_is_the_same_with_or_without_linear_probe_runs(curves_dir, tmp_path):
    """The C-search steps draw nothing on the epoch axis: the figure's bytes do not change when they are added,
    and the page says why they are missing."""
    summary = summarize(RUNS)
    frames = report_frames(summary, RUNS)
    before = write_figures(frames, load_curves(curves_dir), tmp_path / "before")
    _linear_probe_search(curves_dir)
    after = write_figures(frames, load_curves(curves_dir), tmp_path / "after")
    name = "curves_base2new_synthetic.png"
    assert (tmp_path / "before" / name).read_bytes() == (tmp_path / "after" / name).read_bytes()
    notes = {n: note for s, _, n, note in after if s == "curves"}
    assert notes[name] == ("One logged step only, not drawn: zeroshot. Not on the epoch axis: linear_probe (its "
                           "logged steps are the values of the regularisation C it tried on the val shots, not "
                           "epochs).")
    assert notes["curves_domain_shift_synthetic.png"] == ""
    assert [n for _, _, n, note in before if n == name and note] == [name]


@pytest.fixture()
def figures(curves_dir, tmp_path):
    summary = summarize(RUNS)
    frames = report_frames(summary, RUNS)
    made = write_figures(frames, load_curves(curves_dir), tmp_path / "metrics/figures")
    return summary, frames, made


def test_write_figures(figures, tmp_path):
    *_, made = figures
    assert [(s, name) for s, _, name, _ in made] == [
        ("base2new", "base2new.png"), ("domain_shift", "domain_shift_synthetic.png"),
        ("cross_dataset", "cross_dataset_synthetic.png"), ("few_shot", "few_shot_synthetic.png"),
        ("curves", "curves_base2new_synthetic.png"), ("curves", "curves_domain_shift_synthetic.png")]
    assert made[4][3] == "One logged step only, not drawn: zeroshot." and made[5][3] == ""
    for *_, name, _ in made:
        _not_blank(_png(tmp_path / "metrics/figures" / name))
    assert _png(tmp_path / "metrics/figures/few_shot_synthetic.png").shape[1::-1] == _px(BAR_SIZE)


def _page(figures, tmp_path, params=PARAMS) -> tuple[str, Path]:
    summary, frames, made = figures
    page = tmp_path / "metrics/report.md"
    made = [(s, t, tmp_path / "metrics/figures" / name, note) for s, t, name, note in made]
    return results_page(summary, frames, RUNS, params, made, page, load_references()), page


def test_results_page_links_existing_files(figures, tmp_path):
    text, page = _page(figures, tmp_path)
    links = re.findall(r"!\[[^]]*\]\(([^)]+)\)", text)
    assert links == ["figures/base2new.png", "figures/domain_shift_synthetic.png",
                     "figures/cross_dataset_synthetic.png", "figures/few_shot_synthetic.png",
                     "figures/curves_base2new_synthetic.png", "figures/curves_domain_shift_synthetic.png"]
    assert all((page.parent / link).is_file() for link in links)


def test_results_page_content(figures, tmp_path):
    text, _ = _page(figures, tmp_path)
    assert text.startswith("# Results\n")
    # the headline table comes first, before every protocol section
    assert text.index("## Headline") < min(text.index(f"## {t}") for t in ("Base-to-new", "Domain shift"))
    assert "| coop | 60.00 | 45.00 | 51.43 | 50.00 | 55.00 | 45.00 |" in text.split("## Base-to-new")[0]
    assert ("**22 runs** (8 base-to-new, 4 domain shift, 2 cross-dataset transfer, 8 few-shot) of 2 methods "
            "(coop, zeroshot), seeds 1, 2.") in text
    assert "cross-dataset from synthetic to synthetic_shapes; few-shot curves (1, 2 shots) on synthetic." in text
    assert "| coop | 2 | 85.00 ± 7.07 | 55.00 ± 7.07 |" in text  # cross-dataset
    assert "| coop | 2 | 25.00 ± 7.07 | 45.00 ± 7.07 |" in text  # few-shot
    assert "Model `promptlab-tiny`, weights `models/tiny_clip/open_clip_model.safetensors`; 16 shots" in text
    assert "| coop | 2 | 85.00 ± 7.07 | 15.00 ± 7.07 | 25.50 ± 9.90 |" in text  # the tables
    assert "| coop | 2 | 25.00 ± 7.07 | 75.00 ± 7.07 |" in text
    assert "One logged step only, not drawn: zeroshot." in text
    assert "Not shown: these runs are not the paper protocol" in text and "| CoOp |" not in text
    assert "```yaml\nmodel:\n  name: promptlab-tiny\n" in text and "coop:\n  epochs: 10\n" in text
    assert "cocoop:" not in text.split("## Parameters")[1]  # only the blocks of methods that ran


def test_results_page_compares_with_the_papers_under_the_paper_protocol(figures, tmp_path):
    params = {**PARAMS, "model": {"name": "ViT-B-16", "pretrained": "openai"},
              "data": {**PARAMS["data"], "datasets": ELEVEN}}
    text, _ = _page(figures, tmp_path, params)
    assert "Not shown" not in text
    # our coop average (base 60, new 45, HM 51.43) beside CoOp's 82.69 / 63.22 / 71.66
    assert "| CoOp | 60.00 | 82.69 | -22.69 | 45.00 | 63.22 | -18.22 | 51.43 | 71.66 | -20.23 | cocoop |" in text
    assert "| MaPLe | — | 82.28 | — |" in text
    assert "Conditional Prompt Learning for Vision-Language Models" in text  # the papers are cited


def test_report_stage_end_to_end_is_byte_identical_on_rerun(curves_dir, tmp_path, monkeypatch):
    for r in RUNS:
        shots = [f"shots{r['shots']}"] if "shots" in r else []
        write_json(tmp_path.joinpath("runs", r["method"], r["protocol"], r["dataset"], *shots, f"seed{r['seed']}.json"), r)
    main = runpy.run_path(str(REPO / "stages/report.py"))["main"]
    monkeypatch.chdir(REPO)  # the stage validates the repository's params.yaml

    def stage(out: Path) -> None:
        monkeypatch.setattr(sys, "argv", ["report.py", "--runs", str(tmp_path / "runs"), "--curves", str(curves_dir),
                                          "--summary", str(out / "summary.json"), "--tables", str(out / "tables"),
                                          "--plots", str(out / "plots"), "--figures", str(out / "figures"),
                                          "--page", str(out / "report.md")])
        main()

    stage(tmp_path / "a")
    stage(tmp_path / "b")
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert {str(p) for p in files} >= {"summary.json", "report.md", "tables/base2new.md", "tables/base2new.csv",
                                       "tables/domain_shift.md", "plots/base2new.csv", "figures/base2new.png",
                                       "figures/curves_domain_shift_synthetic.png"}
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    page = (tmp_path / "a/report.md").read_text()
    assert all((tmp_path / "a" / link).is_file() for link in re.findall(r"\]\(([^)]+\.png)\)", page))
