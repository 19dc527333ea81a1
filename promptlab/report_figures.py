"""The report's PNG figures and the results page that shows them (docs/architecture.md "Report outputs").

Figures are drawn with matplotlib's Agg canvas under matplotlib's default style (a user's matplotlibrc cannot
change them), at a fixed size and dpi, and saved without the Software/date metadata, so a rerun on the same
inputs writes identical bytes. Training curves come from the DVCLive files the run stage writes under
<curves>/<method>/<protocol>/<dataset>/seed<N>/plots/metrics/train/{loss,acc}.tsv.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from pathlib import Path

import matplotlib.style
import polars as pl
import yaml
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from promptlab.methods import methods
from promptlab.report import (HEADLINE_LEGEND, PROTOCOL_TITLES, base2new_reference, domain_shift_reference,
                              headline_markdown, is_paper_protocol, markdown_table, protocol_markdown)

DPI = 100
BAR_SIZE = (9.0, 3.6)  # inches: 900 x 360 px
CURVE_SIZE = (10.0, 3.6)  # 1000 x 360 px
CURVE_METRICS = ("loss", "acc")
STYLE = ["default", {"font.size": 8, "axes.spines.top": False, "axes.spines.right": False,
                     "axes.grid": True, "axes.grid.axis": "y", "grid.alpha": 0.3}]
CURVE_SCHEMA = {"method": pl.String, "protocol": pl.String, "dataset": pl.String, "seed": pl.Int64,
                "metric": pl.String, "step": pl.Int64, "value": pl.Float64}


def _save(fig: Figure, path: Path) -> None:
    """PNG through the Agg canvas, with no metadata that would differ between runs."""
    FigureCanvasAgg(fig)
    fig.savefig(path, format="png", dpi=DPI, metadata={"Software": None})


def _colours(methods: list[str]) -> dict[str, str]:
    """One colour per method, the same in every figure (methods in name order)."""
    return {m: f"C{i % 10}" for i, m in enumerate(sorted(methods))}


def grouped_bars(groups: list[str], series: dict[str, tuple[list, list]], title: str, path: Path) -> None:
    """Bars of each series side by side per group, with ±std error bars; a null value draws no bar."""
    nan = lambda xs: [math.nan if x is None else x for x in xs]  # noqa: E731
    with matplotlib.style.context(STYLE):
        fig = Figure(figsize=BAR_SIZE, dpi=DPI, layout="constrained")
        ax = fig.add_subplot()
        width = 0.8 / max(len(series), 1)
        for i, (name, (means, stds)) in enumerate(series.items()):
            xs = [g + (i - (len(series) - 1) / 2) * width for g in range(len(groups))]
            ax.bar(xs, nan(means), width, yerr=nan(stds), capsize=2, label=name, color=f"C{i}")
        ax.set_xticks(range(len(groups)), groups, rotation=30, ha="right")
        ax.set(ylabel="accuracy (%)", title=title)
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
        _save(fig, path)


def plot_base2new(b2n: pl.DataFrame, path: Path) -> None:
    """Per method, base / new / HM of the average row."""
    avg = b2n.filter(pl.col("dataset") == "average")
    series = {label: (avg[k].to_list(), avg[f"{k}_std"].to_list())
              for label, k in (("base", "base"), ("new", "new"), ("HM", "hm"))}
    grouped_bars(avg["method"].to_list(), series, "Base-to-new, average over datasets (± std over seeds)", path)


def plot_transfer(shift: pl.DataFrame, source: str, title: str, path: Path) -> None:
    """Per method, accuracy on the source and on each target (domain shift, cross-dataset)."""
    rows = shift.filter(pl.col("source") == source)
    targets = [c for c in rows.columns[3:] if not c.endswith("_std") and rows[c].null_count() < len(rows)]
    series = {t: (rows[t].to_list(), rows[f"{t}_std"].to_list()) for t in targets}
    grouped_bars(rows["method"].to_list(), series, f"{title}, trained on {source} (± std over seeds)", path)


def plot_few_shot(few: pl.DataFrame, dataset: str, colours: dict[str, str], path: Path) -> None:
    """Accuracy against shots per class (log2 axis), one line per method, ±std error bars."""
    rows = few.filter(pl.col("dataset") == dataset)
    shots = [int(c) for c in rows.columns if c.isdigit()]
    with matplotlib.style.context(STYLE):
        fig = Figure(figsize=BAR_SIZE, dpi=DPI, layout="constrained")
        ax = fig.add_subplot()
        for row in rows.iter_rows(named=True):
            ax.errorbar(shots, [row[str(k)] for k in shots], yerr=[row[f"{k}_std"] for k in shots], capsize=2,
                        marker="o", ms=3, lw=1.2, label=row["method"], color=colours[row["method"]])
        ax.set_xscale("log", base=2)
        ax.set_xticks(shots, [str(k) for k in shots])
        ax.set(xlabel="shots per class", ylabel="accuracy (%)",
               title=f"Few-shot on {dataset}, all classes (± std over seeds)")
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
        _save(fig, path)


def load_curves(curves_dir: str | Path) -> pl.DataFrame:
    """Every per-epoch loss/acc value DVCLive logged, one row per (method, protocol, dataset, seed, metric, step)."""
    curves_dir, frames = Path(curves_dir), []
    for path in sorted(curves_dir.glob("*/*/*/seed*/plots/metrics/train/*.tsv")):
        if path.stem in CURVE_METRICS:
            method, protocol, dataset, seed = path.relative_to(curves_dir).parts[:4]
            frames.append(pl.read_csv(path, separator="\t").select(
                pl.lit(method).alias("method"), pl.lit(protocol).alias("protocol"), pl.lit(dataset).alias("dataset"),
                pl.lit(int(seed.removeprefix("seed"))).alias("seed"), pl.lit(path.stem).alias("metric"),
                pl.col("step").cast(pl.Int64), pl.col(path.stem).cast(pl.Float64).alias("value")))
    return pl.concat(frames) if frames else pl.DataFrame(schema=CURVE_SCHEMA)


def mean_curves(curves: pl.DataFrame) -> pl.DataFrame:
    """Each curve averaged over seeds, step by step (a step some seeds lack is the mean of the others)."""
    keys = ["protocol", "dataset", "method", "metric", "step"]
    return curves.group_by(keys).agg(pl.col("value").mean().alias("mean"), pl.len().alias("seeds")).sort(keys)


def trains_in_epochs(method: str) -> bool:
    """Whether a method's logged steps are SGD epochs: its params block has `epochs` (the shared training loop's
    methods). The linear probe's steps are its search over the regularisation C (one fit per C tried, scored on
    the val shots), and the zero-shot methods log one step: neither belongs on an epoch axis."""
    spec = methods().get(method)
    config = spec.config if spec else None
    return config is not None and "epochs" in config.model_fields


def split_epoch_curves(mean: pl.DataFrame) -> tuple[pl.DataFrame, list[str]]:
    """(the curves of methods that train in epochs, the sorted names of the other methods with more than one
    logged step: left off the epoch axis)."""
    methods = mean["method"].unique().to_list()
    epochs = [m for m in methods if trains_in_epochs(m)]
    steps = mean.group_by("method").agg(pl.col("step").n_unique()).filter(pl.col("step") > 1)["method"]
    return mean.filter(pl.col("method").is_in(epochs)), sorted(set(steps) - set(epochs))


def plot_curves(mean: pl.DataFrame, colours: dict[str, str], title: str, path: Path) -> None:
    """Loss and accuracy per epoch, one line per method; methods with a single logged step (nothing trained,
    or one epoch) are left out."""
    with matplotlib.style.context(STYLE):
        fig = Figure(figsize=CURVE_SIZE, dpi=DPI, layout="constrained")
        for ax, metric in zip(fig.subplots(1, len(CURVE_METRICS)), CURVE_METRICS):
            for (method,), line in mean.filter(pl.col("metric") == metric).group_by("method", maintain_order=True):
                if line.height > 1:
                    ax.plot(line["step"], line["mean"], label=method, color=colours[method], lw=1.2)
            ax.set(xlabel="step (epoch)", ylabel="accuracy (%)" if metric == "acc" else metric)
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
        fig.suptitle(title)
        _save(fig, path)


def write_figures(frames: dict[str, pl.DataFrame], curves: pl.DataFrame, out: str | Path) -> list[tuple]:
    """All figures into `out`; returns (section, title, file name, note) per figure, in page order."""
    out, made = Path(out), []
    out.mkdir(parents=True, exist_ok=True)
    if frames["base2new"].height:
        plot_base2new(frames["base2new"], out / "base2new.png")
        made.append(("base2new", "Base-to-new, average over datasets", "base2new.png", ""))
    for protocol in ("domain_shift", "cross_dataset"):
        title = PROTOCOL_TITLES[protocol]
        for source in frames[protocol]["source"].unique(maintain_order=True):
            plot_transfer(frames[protocol], source, title, out / f"{protocol}_{source}.png")
            made.append((protocol, f"{title} from {source}", f"{protocol}_{source}.png", ""))
    methods = sorted({*curves["method"].unique().to_list(), *frames["few_shot"]["method"].to_list()})
    colours = _colours(methods)
    for dataset in frames["few_shot"]["dataset"].unique(maintain_order=True):
        plot_few_shot(frames["few_shot"], dataset, colours, out / f"few_shot_{dataset}.png")
        made.append(("few_shot", f"Few-shot on {dataset}", f"few_shot_{dataset}.png", ""))
    mean = mean_curves(curves)
    for (protocol, dataset), part in mean.group_by("protocol", "dataset", maintain_order=True):
        name, title = f"curves_{protocol}_{dataset}.png", f"Training curves: {protocol}, {dataset} (mean over seeds)"
        epochs, searches = split_epoch_curves(part)
        plot_curves(epochs, colours, title, out / name)
        made.append(("curves", title, name, _curves_note(part, searches)))
    return made


def _curves_note(mean: pl.DataFrame, searches: list[str]) -> str:
    """What a training-curves figure leaves out, and why (`searches`: from split_epoch_curves)."""
    steps = mean.group_by("method").agg(pl.col("step").n_unique()).filter(pl.col("step") < 2)
    notes = [f"One logged step only, not drawn: {', '.join(sorted(steps['method']))}."] if steps.height else []
    if searches:
        notes.append(f"Not on the epoch axis: {', '.join(searches)} (its logged steps are the values of the "
                     "regularisation C it tried on the val shots, not epochs).")
    return " ".join(notes)


# --- the results page -----------------------------------------------------------------------------------------------


def _signed(df: pl.DataFrame) -> pl.DataFrame:
    """Differences (columns ending in Δ) as signed text, and "HM" spelled as in the other tables."""
    df = df.with_columns(pl.Series(c, [None if v is None else f"{v:+.2f}" for v in df[c]], dtype=pl.String)
                         for c in df.columns if c.endswith("Δ"))
    return df.rename({c: c.replace("hm ", "HM ") for c in df.columns})


def reference_section(summary: dict, refs: dict) -> str:
    """Our numbers beside the published ones (the paper protocol only), with the papers cited."""
    papers = "".join(f"- `{key}`: {text}\n" for key, text in refs["papers"].items())
    return ("### Base-to-new, average over the 11 datasets\n\n"
            + markdown_table(_signed(base2new_reference(summary, refs)))
            + f"\n### Domain generalisation, trained on {refs['domain_shift']['source']}\n\n"
            + markdown_table(_signed(domain_shift_reference(summary, refs)))
            + "\nΔ = ours − paper; — where promptlab has no such run.\n\nSources (`from`):\n\n" + papers)


def _setting(runs: list[dict], params: dict) -> str:
    """One paragraph: the run count and the model and data params that produced them."""
    count = Counter(r["protocol"] for r in runs)
    model, data, ev = params["model"], params["data"], params["eval"]
    methods, seeds = sorted({r["method"] for r in runs}), sorted({r["seed"] for r in runs})
    ran = ", ".join(f"{count[p]} {PROTOCOL_TITLES[p].split(',')[0].lower()}" for p in PROTOCOL_TITLES if count[p])
    where = {"base2new": f"base-to-new on {', '.join(data['datasets'])}",
             "domain_shift": f"domain shift from {ev['domain_shift']['source']} to "
                             f"{', '.join(ev['domain_shift']['targets'])}",
             "cross_dataset": f"cross-dataset from {ev['cross_dataset']['source']} to "
                              f"{', '.join(ev['cross_dataset']['targets'])}",
             "few_shot": f"few-shot curves ({', '.join(map(str, ev['few_shot']['shots']))} shots) on "
                         f"{', '.join(ev['few_shot']['datasets'])}"}
    return (f"**{len(runs)} runs** ({ran}) of {len(methods)} methods ({', '.join(methods)}), seeds "
            f"{', '.join(map(str, seeds))}. Model `{model['name']}`, weights `{model['pretrained']}`; "
            f"{data['shots']} shots; " + "; ".join(where[p] for p in PROTOCOL_TITLES if count[p]) + ".\n")


def results_page(summary: dict, frames: dict[str, pl.DataFrame], runs: list[dict], params: dict,
                 figures: list[tuple[str, str, Path, str]], page: str | Path, refs: dict) -> str:
    """The results page: runs and params, the headline table (one row per method), the tables and figures of each
    protocol (links relative to the page), training curves, and, under the paper protocol only, the published
    numbers beside ours."""
    link = lambda p: Path(os.path.relpath(p, Path(page).parent)).as_posix()  # noqa: E731
    figs = lambda section: "".join(f"![{t}]({link(p)})\n\n" + (n and f"{n}\n\n")  # noqa: E731
                                   for s, t, p, n in figures if s == section)
    model, data = params["model"], params["data"]
    paper = is_paper_protocol(model["name"], model["pretrained"], data["datasets"], data["shots"], refs)
    p = refs["protocol"]
    blocks = [k for k in ("model", "data", "features", "eval", *sorted({r["method"] for r in runs})) if k in params]
    sections = [f"## {title}\n\n" + figs(protocol) + (protocol_markdown(protocol, frames[protocol], "###")
                                                     or f"No {title.split(',')[0].lower()} runs.\n")
                for protocol, title in PROTOCOL_TITLES.items()]
    return "\n".join([
        "# Results\n", "<!-- generated by stages/report.py from the per-run metrics: change the code, not this -->\n",
        _setting(runs, params),
        "## Headline\n", f"{HEADLINE_LEGEND}\n", headline_markdown(summary) or "No runs.\n",
        "Accuracies in %, mean ± sample std over seeds. HM is the harmonic mean of the seed-averaged base and new "
        "(its ± is the std of the per-seed HMs); the average is the HM of the dataset-averaged base and new. "
        "— : a closed-vocabulary method (linear probe) cannot score classes it was not trained on. Domain shift, "
        "cross-dataset and the full-shot few-shot point evaluate one training per seed (all classes of the "
        "source).\n",
        *sections,
        "## Training curves\n", figs("curves")[:-1] or "No training curves.\n",
        "## Published numbers\n",
        reference_section(summary, refs) if paper else
        f"Not shown: these runs are not the paper protocol ({' or '.join(p['models'])} with `{p['pretrained']}` "
        f"weights, {p['shots']} shots, the 11 base-to-new datasets), so the papers' numbers are not comparable.\n",
        "## Parameters\n", "<details><summary>params.yaml sections these results depend on</summary>\n",
        "```yaml\n" + yaml.safe_dump({k: params[k] for k in blocks}, sort_keys=False) + "```\n", "</details>\n"])
