"""Aggregating per-run metrics into metrics/summary.json (shape: docs/architecture.md), the report tables (mean ±
std over seeds, methods as rows), and the published numbers they are compared with under the paper protocol.

Per run JSON (written by the run stage):
    base2new:     {"protocol": "base2new", "dataset", "method", "seed", "base": {correct,total,acc}, "new": {...}}
                  ("new": null for a method that cannot score unseen classes: its new and HM are null too)
    domain_shift: {"protocol": "domain_shift", "dataset": source, "method", "seed", "targets": {id: {...}}}
    cross_dataset: the same shape ("targets": {id: null} for a closed-vocabulary method on foreign classes)
    few_shot:     {"protocol": "few_shot", "dataset", "method", "seed", "shots": K, "test": {...}}
    every run:    "environment": the machine it ran on (promptlab.environment: CPU, vector ISA, versions, threads,
                  device, fingerprint); summary.json's "environment" key aggregates them (environment_summary)
Conventions: per dataset, base and new accuracies are averaged over seeds and HM = 2BN/(B+N) of those
averages; the overall row is the HM of the dataset-averaged base and new, not the mean of per-dataset HMs.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import polars as pl
import yaml

from promptlab.io import atomic_file, read_json


def harmonic_mean(base: float, new: float) -> float:
    return 2 * base * new / (base + new) if base + new > 0 else 0.0


def _r(x: float) -> float:
    return round(float(x), 4)


def _opt(x: float | None) -> float | None:
    return None if x is None else _r(x)


def load_runs(runs_dir: str | Path) -> list[dict]:
    return [read_json(p) for p in sorted(Path(runs_dir).rglob("*.json"))]


# --- aggregation over seeds: polars groups, statistics' arithmetic -------------------------------------------------
# The groups are polars group_bys; the mean and std of a group are statistics.fmean (an exactly rounded sum) and
# statistics.stdev (exact), not polars' .mean() and .std(): those differ from them in the last bit (in about 6% and
# 30% of groups of accuracies), which is enough to flip the 4-decimal rounding of a tie, e.g. a mean of 24.21875
# (about 1 in 7,000 means of 3 seeds on 1152 test images). summary.json's numbers are a contract.


def _stdev(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def _per_group(stat, column: str) -> pl.Expr:
    """stat (a function of a list of floats) of `column` over each group; null when any value is null, so a
    closed-vocabulary method's new classes or a target some seed could not score stay null instead of being
    averaged over fewer seeds (and for the empty series polars passes when a frame has no rows)."""
    return pl.col(column).map_batches(lambda s: None if s.has_nulls() or s.is_empty() else stat(s.to_list()),
                                      pl.Float64, returns_scalar=True)


def _mean(column: str) -> pl.Expr:
    return _per_group(statistics.fmean, column).alias(column)


def _std(column: str) -> pl.Expr:
    """The sample std over a group as `<column>_std`; 0.0 for a single value."""
    return _per_group(_stdev, column).alias(f"{column}_std")


def _hm(base: str, new: str) -> pl.Expr:
    """harmonic_mean, row by row (null where new is)."""
    b, n = pl.col(base), pl.col(new)
    return pl.when(b + n > 0).then(2 * b * n / (b + n)).when(n.is_not_null()).then(0.0)


def _nest(frame: pl.DataFrame, cell) -> dict:
    """{first column: {second column: cell(row)}} over the frame's rows, in its order."""
    outer, inner = frame.columns[:2]
    out: dict = {}
    for row in frame.iter_rows(named=True):
        out.setdefault(row[outer], {})[row[inner]] = cell(row)
    return out


def _rounded(frame: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    """`columns` rounded to 4 decimals by Python's round, as every number of the summary (polars' .round(4)
    differs on some ties)."""
    return frame.with_columns(pl.Series(c, [_opt(v) for v in frame[c]], dtype=pl.Float64) for c in columns)


def _count(acc: dict | None) -> list[int] | None:
    return None if acc is None else [acc["correct"], acc["total"]]


def _value(acc: dict | None) -> float | None:
    return None if acc is None else acc["acc"]


# --- metrics/summary.json --------------------------------------------------------------------------------------------

COUNT = pl.List(pl.Int64)
B2N_RUN_SCHEMA = {"dataset": pl.String, "method": pl.String, "seed": pl.Int64, "base": pl.Float64,
                  "new": pl.Float64, "base_count": COUNT, "new_count": COUNT}


def _base2new_runs(runs: list[dict]) -> pl.DataFrame:
    """[dataset, method, seed, base, new, base_count, new_count]: one row per base-to-new run, in run order;
    accuracies in %, counts [correct, total]; new and new_count null for a closed-vocabulary method."""
    return pl.DataFrame([{"dataset": r["dataset"], "method": r["method"], "seed": r["seed"],
                          "base": r["base"]["acc"], "new": _value(r["new"]),
                          "base_count": _count(r["base"]), "new_count": _count(r["new"])}
                         for r in runs if r["protocol"] == "base2new"], schema=B2N_RUN_SCHEMA)


def _base2new_cell(row: dict) -> dict:
    """A (dataset, method) entry of the summary; a closed-vocabulary method (linear probe) has base only."""
    closed = row["new"] is None
    return {"base": _r(row["base"]), "new": _opt(row["new"]),
            "hm": None if closed else _r(harmonic_mean(row["base"], row["new"])),
            "base_std": _r(row["base_std"]), "new_std": _opt(row["new_std"]), "seeds": sorted(row["seed"]),
            "counts": {str(seed): {"base": base, "new": None if closed else new}
                       for seed, base, new in zip(row["seed"], row["base_count"], row["new_count"])}}


def _average_cell(row: dict) -> dict:
    """A method's entry of the summary's "average": the HM of its dataset-averaged base and new."""
    closed = row["new"] is None
    return {"base": _r(row["base"]), "new": _opt(row["new"]),
            "hm": None if closed else _r(harmonic_mean(row["base"], row["new"])), "datasets": row["datasets"]}


def summarize_base2new(runs: list[dict]) -> dict:
    # [dataset, method, base, base_std, new, new_std, seed, base_count, new_count]: one row per (dataset, method)
    # in name order, means and stds over its seeds; seed and the counts are lists in run order
    cells = (_base2new_runs(runs).group_by("dataset", "method", maintain_order=True)
             .agg(_mean("base"), _std("base"), _mean("new"), _std("new"), "seed", "base_count", "new_count")
             .sort("dataset", "method"))
    # [method, base, new, datasets]: one row per method in name order, the per-dataset means averaged
    average = (cells.group_by("method", maintain_order=True)
               .agg(_mean("base"), _mean("new"), datasets=pl.len())
               .sort("method"))
    out = _nest(cells, _base2new_cell)
    if out:
        out["average"] = {row["method"]: _average_cell(row) for row in average.iter_rows(named=True)}
    return out


def _target_stats(runs: list[dict], protocol: str) -> pl.DataFrame:
    """[source, method, target, acc, acc_std]: one row per (source, method, target) in name order, mean and std
    over seeds (null where some seed could not score the target)."""
    # [source, method, seed, target, acc]: one row per (run, target)
    scores = pl.DataFrame([{"source": r["dataset"], "method": r["method"], "seed": r["seed"], "target": target,
                            "acc": _value(count)}
                           for r in runs if r["protocol"] == protocol for target, count in r["targets"].items()],
                          schema={"source": pl.String, "method": pl.String, "seed": pl.Int64, "target": pl.String,
                                  "acc": pl.Float64})
    keys = ["source", "method", "target"]
    return scores.group_by(keys).agg(_mean("acc"), _std("acc")).sort(keys)


def summarize_transfer(runs: list[dict], protocol: str) -> dict:
    """domain_shift / cross_dataset: {source: {method: {target: mean %, f"{target}_std": std}}}; a target some
    seed could not score (null) is null."""
    # [source, method, target, acc, acc_std]: lists of one (source, method)'s targets, in name order
    rows = _target_stats(runs, protocol).group_by("source", "method", maintain_order=True).agg(pl.all())
    return _nest(rows, lambda row: {k: v for target, acc, std in zip(row["target"], row["acc"], row["acc_std"])
                                    for k, v in ((target, _opt(acc)), (f"{target}_std", _opt(std)))})


def summarize_few_shot(runs: list[dict]) -> dict:
    """{dataset: {method: {"<K>": mean %, "<K>_std": std}}}, shot counts in increasing order."""
    # [dataset, method, shots, acc]: one row per few-shot run
    scores = pl.DataFrame([{"dataset": r["dataset"], "method": r["method"], "shots": r["shots"],
                            "acc": r["test"]["acc"]} for r in runs if r["protocol"] == "few_shot"],
                          schema={"dataset": pl.String, "method": pl.String, "shots": pl.Int64, "acc": pl.Float64})
    keys = ["dataset", "method", "shots"]
    # [dataset, method, shots, acc, acc_std]: lists of one (dataset, method)'s shot counts, increasing
    rows = (scores.group_by(keys).agg(_mean("acc"), _std("acc")).sort(keys)
            .group_by("dataset", "method", maintain_order=True).agg(pl.all()))
    return _nest(rows, lambda row: {k: _r(v) for shots, acc, std in zip(row["shots"], row["acc"], row["acc_std"])
                                    for k, v in ((str(shots), acc), (f"{shots}_std", std))})


def summarize(runs: list[dict]) -> dict:
    """metrics/summary.json: one key per protocol (shape: docs/architecture.md "metrics/summary.json")."""
    return {"base2new": summarize_base2new(runs), "domain_shift": summarize_transfer(runs, "domain_shift"),
            "cross_dataset": summarize_transfer(runs, "cross_dataset"), "few_shot": summarize_few_shot(runs)}


def environment_summary(runs: list[dict]) -> dict:
    """summary.json's "environment": each fact the runs agree on as is; one they differ in as its distinct values
    joined by " | " (so `dvc metrics diff` shows the change as one string); `machines` = distinct fingerprints;
    `recorded` = runs that carry an environment. {} when none does."""
    envs = [r["environment"] for r in runs if r.get("environment")]
    if not envs:
        return {}
    out: dict = {}
    for key in dict.fromkeys(k for e in envs for k in e):  # first-seen key order
        values = sorted({str(e.get(key, "—")) for e in envs})
        out[key] = envs[0][key] if len(values) == 1 else " | ".join(values)
    out["machines"] = len({e.get("fingerprint") for e in envs})
    out["recorded"] = len(envs)
    return out


def environment_markdown(env: dict, runs: list[dict]) -> str:
    """The results page's "Environment" section: the machine facts, and a warning naming which methods ran
    where when the runs come from more than one machine."""
    if not env:
        return "## Environment\n\nNot recorded: these runs carry no machine fingerprint (promptlab.environment).\n"
    lines = ["## Environment\n", "The machine these numbers were computed on. Same params on the same machine "
             "reproduce them byte for byte; on another CPU or thread count they move in the last digits (README, "
             "\"What the pipeline guarantees\"). `dvc metrics diff` lists these keys under `environment.`.\n"]
    if env["machines"] > 1:
        # [fingerprint, method]: the methods that ran on each machine, both in name order
        where = (pl.DataFrame([{"fingerprint": r["environment"].get("fingerprint"), "method": r["method"]}
                               for r in runs if r.get("environment")],
                              schema={"fingerprint": pl.String, "method": pl.String})
                 .group_by("fingerprint").agg(pl.col("method").unique().sort()).sort("fingerprint"))
        lines.append(f"**These results mix {env['machines']} machines**: "
                     + "; ".join(f"`{fp}`: {', '.join(m)}" for fp, m in where.iter_rows()) + ".\n")
    missing = len(runs) - env["recorded"]
    if missing:
        lines.append(f"{missing} of {len(runs)} runs carry no environment.\n")
    cell = lambda v: str(v).replace("|", "\\|")  # noqa: E731  a " | "-joined value stays one table cell
    lines += ["| | |", "|---|---|", *(f"| {k} | {cell(v)} |" for k, v in env.items() if k not in ("machines", "recorded"))]
    return "\n".join(lines) + "\n"


def base2new_table(summary: dict) -> pl.DataFrame:
    rows = [{"dataset": ds, "method": m, "base": v["base"], "new": v["new"], "hm": v["hm"]}
            for ds, methods in summary["base2new"].items() for m, v in methods.items()]
    return pl.DataFrame(rows, schema={"dataset": pl.String, "method": pl.String, "base": pl.Float64,
                                      "new": pl.Float64, "hm": pl.Float64})


def transfer_table(summary: dict, protocol: str = "domain_shift") -> pl.DataFrame:
    """One row per (source, method, target) with its mean accuracy: the data of dvc.yaml's bar plots."""
    rows = []
    for source, methods in summary[protocol].items():
        for method, accs in methods.items():
            for target, acc in accs.items():
                if not target.endswith("_std"):
                    rows.append({"source": source, "method": method, "target": target, "acc": acc})
    return pl.DataFrame(rows, schema={"source": pl.String, "method": pl.String, "target": pl.String,
                                      "acc": pl.Float64})


def few_shot_table(summary: dict) -> pl.DataFrame:
    """One row per (dataset, method, shots): the data of dvc.yaml's few-shot line plot."""
    rows = [{"dataset": d, "method": m, "shots": int(k), "acc": v, "acc_std": accs[f"{k}_std"]}
            for d, methods in summary["few_shot"].items() for m, accs in methods.items()
            for k, v in accs.items() if not k.endswith("_std")]
    return pl.DataFrame(rows, schema={"dataset": pl.String, "method": pl.String, "shots": pl.Int64,
                                      "acc": pl.Float64, "acc_std": pl.Float64})


def _cell(v) -> str:
    return f"{v:.2f}" if isinstance(v, float) else "—" if v is None else str(v)


def markdown_table(df: pl.DataFrame) -> str:
    """A GitHub markdown table: floats with 2 decimals, nulls as "—"."""
    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in df.iter_rows()]
    return "\n".join(lines) + "\n"


# --- report tables: methods as rows, mean ± std over seeds ----------------------------------------------------------


def _acc(count: list[int] | None) -> float | None:
    return None if count is None else 100.0 * count[0] / count[1]


SEED_SCHEMA = {"dataset": pl.String, "method": pl.String, "seed": pl.Int64, "base": pl.Float64, "new": pl.Float64}


def _summary_seeds(b2n: dict) -> pl.DataFrame:
    """[dataset, method, seed, base, new]: one row per (dataset, method, seed) of the summary's raw counts,
    accuracies in % (new null for a closed-vocabulary method)."""
    return pl.DataFrame([{"dataset": d, "method": m, "seed": int(seed), "base": _acc(c["base"]), "new": _acc(c["new"])}
                         for d, methods in b2n.items() if d != "average" for m, v in methods.items()
                         for seed, c in v["counts"].items()], schema=SEED_SCHEMA)


def _seed_stds(seeds: pl.DataFrame, by: list[str]) -> pl.DataFrame:
    """[*by, seeds, base_std, new_std, hm_std]: per group (a method on one dataset, or a method over its datasets
    for the average), the seeds all its datasets have, and the stds over those seeds of base and new averaged
    over the datasets per seed, and of the per-seed HMs (the HM itself stays the HM of the means). A group
    without a shared seed has no row."""
    shared = seeds.filter(pl.len().over(*by, "seed") == pl.col("dataset").n_unique().over(by))
    # [*by, seed, base, new, hm]: one row per group and shared seed
    per_seed = shared.group_by(*by, "seed").agg(_mean("base"), _mean("new")).with_columns(hm=_hm("base", "new"))
    return per_seed.group_by(by).agg(pl.len().alias("seeds"), _std("base"), _std("new"), _std("hm"))


B2N_COLUMNS = ["dataset", "method", "seeds", "base", "base_std", "new", "new_std", "hm", "hm_std"]


def base2new_report(summary: dict) -> pl.DataFrame:
    """One row per (dataset, method), the "average" rows first: means from the summary, stds over seeds."""
    b2n = summary["base2new"]
    datasets = sorted(d for d in b2n if d != "average")
    # [dataset, method, base, new, hm]: the summary's means, "average" first, then by dataset and method name
    means = pl.DataFrame([{"dataset": d, "method": m, "base": v["base"], "new": v["new"], "hm": v["hm"]}
                          for d in ["average"] * bool(datasets) + datasets for m, v in sorted(b2n[d].items())],
                         schema={c: pl.String if c in ("dataset", "method") else pl.Float64
                                 for c in ("dataset", "method", "base", "new", "hm")})
    seeds = _summary_seeds(b2n)
    # [dataset, method, seeds, base_std, new_std, hm_std]: each dataset's rows, then the average's
    stds = pl.concat([_seed_stds(seeds, ["dataset", "method"]),
                      _seed_stds(seeds, ["method"]).select(pl.lit("average").alias("dataset"), pl.all())])
    table = means.join(stds, on=["dataset", "method"], how="left", maintain_order="left")
    table = table.with_columns(pl.col("seeds").cast(pl.Int64).fill_null(0))  # 0: no seed all datasets share
    return _rounded(table, ["base_std", "new_std", "hm_std"]).select(B2N_COLUMNS)


def _run_seeds(runs: list[dict], protocol: str, dataset: str) -> pl.DataFrame:
    """[<dataset>, method, seed]: one row per run of the protocol, its dataset in a column named `dataset`."""
    return pl.DataFrame([{dataset: r["dataset"], "method": r["method"], "seed": r["seed"]}
                         for r in runs if r["protocol"] == protocol],
                        schema={dataset: pl.String, "method": pl.String, "seed": pl.Int64})


def _wide_report(rows: list[dict], columns: list[str], seeds: pl.DataFrame) -> pl.DataFrame:
    """`columns` of the summary rows (the two keys, "seeds", then Float64 columns), each row with its seed count
    from `seeds` ([key, key, seeds]; 0 where a row has none)."""
    keys, values = columns[:2], columns[3:]
    table = pl.DataFrame([{c: r.get(c) for c in keys + values} for r in rows],
                         schema={c: pl.String if c in keys else pl.Float64 for c in keys + values})
    return (table.join(seeds, on=keys, how="left", maintain_order="left")
            .with_columns(pl.col("seeds").cast(pl.Int64).fill_null(0)).select(columns))


def transfer_report(summary: dict, runs: list[dict], protocol: str = "domain_shift") -> pl.DataFrame:
    """One row per (source, method) with its seed count (its runs), one column per target (mean, then
    `<target>_std`): the source's own accuracy first, then the targets in name order."""
    rows = [{"source": source, "method": method, **accs}
            for source, methods in sorted(summary[protocol].items()) for method, accs in sorted(methods.items())]
    targets = sorted({k for r in rows for k in r if k not in ("source", "method") and not k.endswith("_std")},
                     key=lambda t: (t not in summary[protocol], t))
    columns = ["source", "method", "seeds"] + [k for t in targets for k in (t, f"{t}_std")]
    seeds = _run_seeds(runs, protocol, "source").group_by("source", "method").agg(seeds=pl.len())
    return _wide_report(rows, columns, seeds)


def few_shot_report(summary: dict, runs: list[dict]) -> pl.DataFrame:
    """One row per (dataset, method) with its seed count (distinct seeds over the shot counts), one column per
    shot count K (mean, then `K_std`)."""
    shots = sorted({int(k) for methods in summary["few_shot"].values() for accs in methods.values()
                    for k in accs if not k.endswith("_std")})
    columns = ["dataset", "method", "seeds"] + [c for k in shots for c in (str(k), f"{k}_std")]
    rows = [{"dataset": d, "method": m, **accs}
            for d, methods in sorted(summary["few_shot"].items()) for m, accs in sorted(methods.items())]
    seeds = _run_seeds(runs, "few_shot", "dataset").group_by("dataset", "method").agg(seeds=pl.col("seed").n_unique())
    return _wide_report(rows, columns, seeds)


def with_pm(df: pl.DataFrame) -> pl.DataFrame:
    """Each column `x` that has an `x_std` sibling becomes the text "mean ± std" ("—" where null)."""
    out = {}
    for c in df.columns:
        if f"{c}_std" in df.columns:
            out[c] = [None if m is None else f"{m:.2f} ± {s:.2f}" if s is not None else f"{m:.2f}"
                      for m, s in zip(df[c], df[f"{c}_std"])]
        elif not (c.endswith("_std") and c[:-4] in df.columns):
            out[c] = df[c]
    return pl.DataFrame(out)


def base2new_markdown(df: pl.DataFrame, level: str = "##") -> str:
    """A table per dataset, methods as rows; the average first (alone when there is one dataset)."""
    datasets, parts = sorted({d for d in df["dataset"] if d != "average"}), []
    for (dataset,), part in df.group_by("dataset", maintain_order=True):
        if len(datasets) == 1 and dataset != "average":
            continue
        title = f"Average over {len(datasets)} dataset{'s' * (len(datasets) != 1)} ({', '.join(datasets)})"
        table = with_pm(part.drop("dataset")).rename({"hm": "HM"})
        parts.append(f"{level} {title if dataset == 'average' else dataset}\n\n{markdown_table(table)}")
    return "\n".join(parts)


def transfer_markdown(df: pl.DataFrame, level: str = "##") -> str:
    """A table per source: methods as rows, one column per target."""
    parts = []
    for (source,), part in df.group_by("source", maintain_order=True):
        empty = [c for c in part.columns if part[c].null_count() == len(part)]  # targets no method here scored
        table = with_pm(part.drop("source", *empty))
        table = table.rename({source: f"{source} (source)"} if source in table.columns else {})
        parts.append(f"{level} Trained on {source}\n\n{markdown_table(table)}")
    return "\n".join(parts)


def few_shot_markdown(df: pl.DataFrame, level: str = "##") -> str:
    """A table per dataset: methods as rows, one column per shot count."""
    parts = []
    for (dataset,), part in df.group_by("dataset", maintain_order=True):
        table = with_pm(part.drop("dataset"))
        table = table.rename({c: f"{c} shot{'s' * (c != '1')}" for c in table.columns if c.isdigit()})
        parts.append(f"{level} {dataset}\n\n{markdown_table(table)}")
    return "\n".join(parts)


# --- the headline: one row per method ------------------------------------------------------------------------------

HEADLINE_COLUMNS = ["method", "base", "new", "hm", "domain_shift", "cross_dataset", "few_shot"]


def _long(rows: list[dict], value: str) -> pl.DataFrame:
    return pl.DataFrame(rows, schema={"method": pl.String, value: pl.Float64})


def _mean_or_null(column: str) -> pl.Expr:
    """The mean over a method's rows, null when any row is null (a target the method could not score), so a
    mean never quietly averages fewer targets for one method than for another."""
    mean = pl.col(column).mean().round(4)  # 4 decimals, like every number of the summary
    return pl.when(pl.col(column).null_count() == 0).then(mean).otherwise(None).alias(column)


def headline_shots(summary: dict) -> int | None:
    """The largest shot count of the few-shot curves (the headline's few-shot column), None without curves."""
    shots = [int(k) for methods in summary["few_shot"].values() for accs in methods.values() for k in accs
             if not k.endswith("_std")]
    return max(shots, default=None)


def headline_table(summary: dict) -> pl.DataFrame:
    """One row per method, the numbers to read first: the base-to-new average (base, new, HM of the
    dataset-averaged base and new, as in the summary), the mean accuracy over the domain-shift targets and over
    the cross-dataset targets (each source's own accuracy left out), and the few-shot accuracy at the largest
    shot count (mean over the few-shot datasets). Null where a method has no such run, or cannot score one of
    the targets. Columns no method has are dropped."""
    average = summary["base2new"].get("average", {})
    b2n = pl.DataFrame([{"method": m, "base": v["base"], "new": v["new"], "hm": v["hm"]} for m, v in average.items()],
                       schema={"method": pl.String, "base": pl.Float64, "new": pl.Float64, "hm": pl.Float64})
    parts = [b2n]
    for protocol in ("domain_shift", "cross_dataset"):
        rows = [{"method": m, protocol: acc} for source, methods in summary[protocol].items()
                for m, accs in methods.items() for t, acc in accs.items() if not t.endswith("_std") and t != source]
        parts.append(_long(rows, protocol).group_by("method").agg(_mean_or_null(protocol)))
    k = headline_shots(summary)
    rows = [{"method": m, "few_shot": accs.get(str(k))} for methods in summary["few_shot"].values()
            for m, accs in methods.items()]
    parts.append(_long(rows, "few_shot").group_by("method").agg(_mean_or_null("few_shot")))
    methods = pl.DataFrame({"method": sorted({m for part in parts for m in part["method"]})}, schema={"method": pl.String})
    table = methods
    for part in parts:
        table = table.join(part, on="method", how="left")
    return table.select(c for c in HEADLINE_COLUMNS if c == "method" or table[c].null_count() < table.height)


HEADLINE_LEGEND = ("base, new, HM: the base-to-new average over datasets (HM of the averaged base and new); domain "
                   "shift, cross-dataset: the mean accuracy over the targets, the source left out; few-shot: all "
                   "classes at the largest shot count. — : no such run, or a target the method cannot score.")


def headline_markdown(summary: dict) -> str:
    """The headline table with readable column names; "" when there are no runs."""
    table = headline_table(summary)
    if not table.height:
        return ""
    k = headline_shots(summary)
    names = {"hm": "HM", "domain_shift": "domain shift", "cross_dataset": "cross-dataset",
             "few_shot": f"few-shot ({k} shot{'s' * (k != 1)})"}
    return markdown_table(table.rename({c: n for c, n in names.items() if c in table.columns}))


PROTOCOL_TITLES = {"base2new": "Base-to-new", "domain_shift": "Domain shift", "cross_dataset": "Cross-dataset transfer",
                   "few_shot": "Few-shot, all classes (accuracy by shots per class)"}


def report_frames(summary: dict, runs: list[dict]) -> dict[str, pl.DataFrame]:
    """The per-protocol report tables (methods as rows, mean and std over seeds)."""
    return {"base2new": base2new_report(summary), "domain_shift": transfer_report(summary, runs, "domain_shift"),
            "cross_dataset": transfer_report(summary, runs, "cross_dataset"),
            "few_shot": few_shot_report(summary, runs)}


def protocol_markdown(protocol: str, df: pl.DataFrame, level: str = "##") -> str:
    render = {"base2new": base2new_markdown, "few_shot": few_shot_markdown}.get(protocol, transfer_markdown)
    return render(df, level)


def write_tables(summary: dict, frames: dict[str, pl.DataFrame], tables: str | Path, plots: str | Path):
    """<tables>/<protocol>.{md,csv} (methods as rows, mean and std over seeds), <tables>/headline.{md,csv} (one
    row per method) and <plots>/<protocol>.csv (one number per row, the data of dvc.yaml's `plots`)."""
    tables, plots = Path(tables), Path(plots)
    outputs = [(plots / "base2new.csv", base2new_table(summary)),
               (plots / "domain_shift.csv", transfer_table(summary, "domain_shift")),
               (plots / "cross_dataset.csv", transfer_table(summary, "cross_dataset")),
               (plots / "few_shot.csv", few_shot_table(summary))]
    outputs += [(tables / "headline.md", f"# Headline (%, mean over seeds)\n\n{HEADLINE_LEGEND}\n\n"
                                          f"{headline_markdown(summary) or 'No runs.'}\n"),
                (tables / "headline.csv", headline_table(summary))]
    for protocol, df in frames.items():
        body = protocol_markdown(protocol, df) or "No runs.\n"
        outputs += [(tables / f"{protocol}.md", f"# {PROTOCOL_TITLES[protocol]} (%, mean ± std over seeds)\n\n{body}"),
                    (tables / f"{protocol}.csv", df)]
    for path, content in outputs:
        with atomic_file(path) as tmp:
            tmp.write_text(content) if isinstance(content, str) else content.write_csv(tmp)


# --- published numbers (promptlab/reference_numbers.yaml) -----------------------------------------------------------

REFERENCES = Path(__file__).with_name("reference_numbers.yaml")


def load_references(path: str | Path = REFERENCES) -> dict:
    """The published numbers, the papers they come from, and the protocol they were measured in."""
    return yaml.safe_load(Path(path).read_text())


def is_paper_protocol(model_name: str, pretrained: str | None, datasets: list[str], shots: int = 16,
                      refs: dict | None = None) -> bool:
    """Whether runs are in the setting of the published numbers, the only case where they are shown beside ours:
    CLIP ViT-B/16 (open_clip name, QuickGELU or not) with `openai` weights, 16 shots and exactly the 11
    base-to-new datasets, in any order. A local checkpoint path is not taken for OpenAI's weights."""
    p = (refs or load_references())["protocol"]
    return (model_name in p["models"] and pretrained == p["pretrained"] and shots == p["shots"]
            and sorted(datasets) == sorted(p["datasets"]))


def _delta(ours: float | None, paper: float) -> float | None:
    return None if ours is None else _r(ours - paper)


def _frame(rows: list[dict]) -> pl.DataFrame:
    text = ("method", "target", "from")
    return pl.DataFrame(rows, schema={c: pl.String if c in text else pl.Float64 for c in rows[0]} if rows else None)


def base2new_reference(summary: dict, refs: dict) -> pl.DataFrame:
    """Our base-to-new average beside each published one, and ours − paper (null where we have no such run)."""
    average = summary["base2new"].get("average", {})
    rows = []
    for method, ref in refs["base2new"].items():
        ours, row = average.get(method, {}), {"method": ref["label"]}
        for k in ("base", "new", "hm"):
            row |= {f"{k} ours": ours.get(k), f"{k} paper": float(ref[k]), f"{k} Δ": _delta(ours.get(k), ref[k])}
        rows.append(row | {"from": ref["paper"]})
    return _frame(rows)


def domain_shift_reference(summary: dict, refs: dict) -> pl.DataFrame:
    """Our accuracy on each published (source → target) pair beside the paper's, and ours − paper."""
    published = refs["domain_shift"]
    ours = summary["domain_shift"].get(published["source"], {})
    return _frame([{"method": ref["label"], "target": t, "ours": ours.get(m, {}).get(t), "paper": float(ref[t]),
                    "Δ": _delta(ours.get(m, {}).get(t), ref[t]), "from": ref["paper"]}
                   for m, ref in published["methods"].items() for t in ref if t not in ("label", "paper")])
