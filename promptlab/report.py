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
from collections import Counter, defaultdict
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


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def load_runs(runs_dir: str | Path) -> list[dict]:
    return [read_json(p) for p in sorted(Path(runs_dir).rglob("*.json"))]


def summarize_base2new(runs: list[dict]) -> dict:
    by_key: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in runs:
        if r["protocol"] == "base2new":
            by_key[(r["dataset"], r["method"])].append(r)
    out: dict = {}
    per_method: dict[str, list[tuple[float, float | None]]] = defaultdict(list)
    for (dataset, method), rs in sorted(by_key.items()):
        base, base_std = _mean_std([r["base"]["acc"] for r in rs])
        closed = any(r["new"] is None for r in rs)  # a closed-vocabulary method (linear probe): base only
        new, new_std = (None, None) if closed else _mean_std([r["new"]["acc"] for r in rs])
        out.setdefault(dataset, {})[method] = {
            "base": _r(base), "new": _opt(new), "hm": None if closed else _r(harmonic_mean(base, new)),
            "base_std": _r(base_std), "new_std": _opt(new_std), "seeds": sorted(r["seed"] for r in rs),
            "counts": {str(r["seed"]): {"base": [r["base"]["correct"], r["base"]["total"]],
                                        "new": None if closed else [r["new"]["correct"], r["new"]["total"]]}
                       for r in rs},
        }
        per_method[method].append((base, new))
    average = {}
    for method, pairs in sorted(per_method.items()):
        base = statistics.fmean(b for b, _ in pairs)
        closed = any(n is None for _, n in pairs)
        new = None if closed else statistics.fmean(n for _, n in pairs)
        average[method] = {"base": _r(base), "new": _opt(new),
                           "hm": None if closed else _r(harmonic_mean(base, new)), "datasets": len(pairs)}
    if out:
        out["average"] = average
    return out


def summarize_transfer(runs: list[dict], protocol: str) -> dict:
    """domain_shift / cross_dataset: {source: {method: {target: mean %, f"{target}_std": std}}}; a target some
    seed could not score (null) is null."""
    by_key: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in runs:
        if r["protocol"] == protocol:
            by_key[(r["dataset"], r["method"])].append(r)
    out: dict = {}
    for (source, method), rs in sorted(by_key.items()):
        row = {}
        for target in sorted(rs[0]["targets"]):
            counts = [r["targets"][target] for r in rs]
            mean, std = (None, None) if None in counts else _mean_std([c["acc"] for c in counts])
            row[target], row[f"{target}_std"] = _opt(mean), _opt(std)
        out.setdefault(source, {})[method] = row
    return out


def summarize_few_shot(runs: list[dict]) -> dict:
    """{dataset: {method: {"<K>": mean %, "<K>_std": std}}}, shot counts in increasing order."""
    by_key: dict[tuple[str, str], dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in runs:
        if r["protocol"] == "few_shot":
            by_key[(r["dataset"], r["method"])][r["shots"]].append(r["test"]["acc"])
    out: dict = {}
    for (dataset, method), per_shots in sorted(by_key.items()):
        row = {}
        for k in sorted(per_shots):
            mean, std = _mean_std(per_shots[k])
            row[str(k)], row[f"{k}_std"] = _r(mean), _r(std)
        out.setdefault(dataset, {})[method] = row
    return out


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
        where = defaultdict(set)
        for r in runs:
            if r.get("environment"):
                where[r["environment"].get("fingerprint")].add(r["method"])
        lines.append(f"**These results mix {env['machines']} machines**: "
                     + "; ".join(f"`{fp}`: {', '.join(sorted(m))}" for fp, m in sorted(where.items())) + ".\n")
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


def _seed_stats(rows: list[dict]) -> dict:
    """Seeds and stds over seeds of summary rows of one method (one dataset, or all for the average), from the
    raw counts: per seed, base and new are averaged over the rows (on the seeds all rows share); the HM's std is
    that of the per-seed HMs (the HM itself stays the HM of the means)."""
    seeds = sorted(set.intersection(*(set(r["counts"]) for r in rows)), key=int)
    base = [statistics.fmean(_acc(r["counts"][s]["base"]) for r in rows) for s in seeds]
    news = [[_acc(r["counts"][s]["new"]) for r in rows] for s in seeds]
    new = None if any(None in n for n in news) else [statistics.fmean(n) for n in news]
    std = lambda xs: None if xs is None or not xs else _r(_mean_std(xs)[1])  # noqa: E731
    return {"seeds": len(seeds), "base_std": std(base), "new_std": std(new),
            "hm_std": std(None if new is None else [harmonic_mean(b, n) for b, n in zip(base, new)])}


B2N_COLUMNS = ["dataset", "method", "seeds", "base", "base_std", "new", "new_std", "hm", "hm_std"]


def base2new_report(summary: dict) -> pl.DataFrame:
    """One row per (dataset, method), the "average" rows first: means from the summary, stds over seeds."""
    b2n = summary["base2new"]
    datasets = sorted(d for d in b2n if d != "average")
    rows = []
    for dataset in ["average"] * bool(datasets) + datasets:
        for method, v in sorted(b2n[dataset].items()):
            members = [b2n[d][method] for d in datasets if method in b2n[d]] if dataset == "average" else [v]
            rows.append({"dataset": dataset, "method": method, "base": v["base"], "new": v["new"], "hm": v["hm"],
                         **_seed_stats(members)})
    schema = {c: pl.String if c in ("dataset", "method") else pl.Int64 if c == "seeds" else pl.Float64
              for c in B2N_COLUMNS}
    return pl.DataFrame(rows, schema=schema)


def transfer_report(summary: dict, runs: list[dict], protocol: str = "domain_shift") -> pl.DataFrame:
    """One row per (source, method) with its seed count, one column per target (mean, then `<target>_std`):
    the source's own accuracy first, then the targets in name order."""
    seeds = Counter((r["dataset"], r["method"]) for r in runs if r["protocol"] == protocol)
    rows = [{"source": source, "method": method, "seeds": seeds[(source, method)], **accs}
            for source, methods in sorted(summary[protocol].items()) for method, accs in sorted(methods.items())]
    targets = sorted({k for r in rows for k in r if k not in ("source", "method", "seeds") and not k.endswith("_std")},
                     key=lambda t: (t not in summary[protocol], t))
    columns = ["source", "method", "seeds"] + [k for t in targets for k in (t, f"{t}_std")]
    schema = {c: pl.String if c in ("source", "method") else pl.Int64 if c == "seeds" else pl.Float64
              for c in columns}
    return pl.DataFrame([{c: r.get(c) for c in columns} for r in rows], schema=schema)


def few_shot_report(summary: dict, runs: list[dict]) -> pl.DataFrame:
    """One row per (dataset, method) with its seed count, one column per shot count K (mean, then `K_std`)."""
    seeds: dict[tuple[str, str], set[int]] = defaultdict(set)
    for r in runs:
        if r["protocol"] == "few_shot":
            seeds[(r["dataset"], r["method"])].add(r["seed"])
    shots = sorted({int(k) for methods in summary["few_shot"].values() for accs in methods.values()
                    for k in accs if not k.endswith("_std")})
    columns = ["dataset", "method", "seeds"] + [c for k in shots for c in (str(k), f"{k}_std")]
    rows = [{"dataset": d, "method": m, "seeds": len(seeds[(d, m)]), **accs}
            for d, methods in sorted(summary["few_shot"].items()) for m, accs in sorted(methods.items())]
    schema = {c: pl.String if c in ("dataset", "method") else pl.Int64 if c == "seeds" else pl.Float64
              for c in columns}
    return pl.DataFrame([{c: r.get(c) for c in columns} for r in rows], schema=schema)


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
