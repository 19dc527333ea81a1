"""great-expectations suites that gate the pipeline (imported lazily: GX takes seconds to import, and quietly:
no progress bars, no INFO lines).

Each suite runs on a small polars table (one row per sample or per class) and yields a JSON-ready report:
{"suite", "success", "evaluated", "failed": [{"expectation", "column", "unexpected_count", "examples"}]}.
`gate` writes that report (the stage's validation output, next to the metrics) and, if anything failed,
stops the stage with one line naming the suite and every failed expectation."""

from __future__ import annotations

import logging
from pathlib import Path

import polars as pl
import torch

from promptlab.errors import UserError
from promptlab.io import write_json

# Projected CLIP embeddings have norms of order 1-100 (ViT-B/16 ~10); outside this range something upstream
# (weights, preprocessing, dtype overflow) is broken.
NORM_RANGE = (1e-3, 1e4)


def _gx():
    """great_expectations, imported so that it prints nothing. GX draws a tqdm bar ("Calculating Metrics") per
    suite on stderr and logs INFO lines (at import, and per context) wherever logging is configured at INFO;
    under `dvc repro` they bury the one line a stage prints about its outcome. Its loggers are held at WARNING
    (one of them sets INFO on itself at import, so it is raised after the import too)."""
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    import great_expectations as gx

    for name in list(logging.root.manager.loggerDict):
        if name.startswith("great_expectations.") and 0 < logging.getLogger(name).level < logging.WARNING:
            logging.getLogger(name).setLevel(logging.WARNING)
    return gx


def _quiet_context():
    """An ephemeral GX context with its progress bars switched off (GX's own `progress_bars` setting)."""
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = _gx().get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    return context


def _run_suite(name: str, df: pl.DataFrame, expectations: list) -> dict:
    gx = _gx()
    context = _quiet_context()
    batch_def = (context.data_sources.add_pandas(name).add_dataframe_asset(name)
                 .add_batch_definition_whole_dataframe(name))
    suite = context.suites.add(gx.ExpectationSuite(name=name, expectations=expectations))
    validation = context.validation_definitions.add(gx.ValidationDefinition(name=name, data=batch_def, suite=suite))
    result = validation.run(batch_parameters={"dataframe": df.to_pandas()})
    failed = [{"expectation": r.expectation_config.type,
               "column": r.expectation_config.kwargs.get("column"),
               "unexpected_count": r.result.get("unexpected_count"),
               "examples": [str(v) for v in (r.result.get("partial_unexpected_list") or [])[:5]]}
              for r in result.results if not r.success]
    return {"suite": name, "success": bool(result.success), "failed": failed, "evaluated": len(result.results)}


def _failure_text(failure: dict) -> str:
    where = f"({failure['column']})" if failure["column"] else ""
    count = f" {failure['unexpected_count']} rows" if failure["unexpected_count"] else ""
    examples = f" e.g. {', '.join(failure['examples'][:3])}" if failure["examples"] else ""
    return f"{failure['expectation']}{where}{count}{examples}"


def gate(reports: dict | list[dict], path: str | Path | None = None) -> dict | list[dict]:
    """Write the report(s) to `path` (if given), then raise one UserError naming every failed expectation."""
    if path is not None:
        write_json(path, reports)
    failures = [f"{r['suite']}: {_failure_text(f)}" for r in (reports if isinstance(reports, list) else [reports])
                for f in r["failed"]]
    if failures:
        where = f" (report: {path})" if path is not None else ""
        raise UserError(f"validation failed: {'; '.join(failures)}{where}")
    return reports


def validate_manifest(manifest: pl.DataFrame, n_classes: int, name: str = "manifest",
                      report: str | Path | None = None, classes_in: tuple[str, ...] = ("test",),
                      skipped: list[dict] | None = None) -> dict:
    """Keys unique, labels in range, splits known, sha256 present, every class has a sample in each split of
    `classes_in` (a failure's examples name the labels). `skipped` (images left out under data.bad_images: skip)
    goes into the report as {"count", "items"}: recorded, not a failure."""
    E = _gx().expectations
    per_class = samples_per_class(manifest, n_classes, classes_in)
    result = _run_suite(name, manifest, [
        E.ExpectColumnValuesToBeUnique(column="key"),
        E.ExpectColumnValuesToNotBeNull(column="sha256"),
        E.ExpectColumnValueLengthsToEqual(column="sha256", value=64),
        E.ExpectColumnValuesToBeBetween(column="label", min_value=0, max_value=n_classes - 1),
        E.ExpectColumnValuesToBeInSet(column="split", value_set=["train", "val", "test"]),
    ])
    classes = _run_suite(f"{name}:classes", per_class, [
        E.ExpectColumnValuesToBeBetween(column=f"{split}_samples", min_value=1) for split in classes_in])
    for failure in classes["failed"]:  # the failing values are all 0: name the classes instead
        empty = per_class.filter(pl.col(failure["column"]) == 0)["label"]
        failure["examples"] = [f"label {label}" for label in empty.head(5)]
    merged = {**result, "success": result["success"] and classes["success"],
              "failed": result["failed"] + classes["failed"], "evaluated": result["evaluated"] + len(classes_in)}
    if skipped is not None:
        merged["skipped"] = {"count": len(skipped), "items": skipped}
    return gate(merged, report)


def samples_per_class(manifest: pl.DataFrame, n_classes: int, splits: tuple[str, ...]) -> pl.DataFrame:
    """label, <split>_samples for each split: one row per class 0..n_classes-1, zeros included."""
    table = pl.DataFrame({"label": list(range(n_classes))}, schema={"label": pl.Int64})
    for split in splits:
        counts = manifest.filter(pl.col("split") == split).group_by("label").len(name=f"{split}_samples")
        table = table.join(counts, on="label", how="left").with_columns(pl.col(f"{split}_samples").fill_null(0))
    return table.sort("label")


def feature_table(tensors: dict[str, torch.Tensor], keys: list[str]) -> pl.DataFrame:
    """One row per sample: key, label, and per-sample stats of the global features [N, V, D] (all views)."""
    g = tensors["global"].float()
    finite = torch.isfinite(g).flatten(1).all(dim=1)
    if "patches" in tensors:
        finite &= torch.isfinite(tensors["patches"].float()).flatten(1).all(dim=1)
    norms = torch.nan_to_num(g.norm(dim=-1), nan=-1.0)  # [N, V]
    return pl.DataFrame({"key": keys, "label": tensors["labels"].tolist(), "finite": finite.tolist(),
                         "min_norm": norms.min(dim=1).values.tolist(), "max_norm": norms.max(dim=1).values.tolist()})


def validate_features(tensors: dict[str, torch.Tensor], keys: list[str], expected_keys: list[str],
                      n_classes: int, embed_dim: int, name: str) -> dict:
    """Rows match the manifest in order, dtype fp16, shapes [N, V, D] / [N, V, P, D], finite, norms in range,
    labels in range."""
    E = _gx().expectations
    g = tensors["global"]
    if keys != expected_keys:
        raise UserError(f"{name}: feature rows do not match the manifest ({len(keys)} rows vs {len(expected_keys)}"
                        f" keys, first difference at row {next((i for i, (a, b) in enumerate(zip(keys, expected_keys)) if a != b), min(len(keys), len(expected_keys)))})")
    shape_ok = g.dtype == torch.float16 and g.ndim == 3 and g.shape[0] == len(keys) and g.shape[-1] == embed_dim
    if "patches" in tensors:
        p = tensors["patches"]
        shape_ok &= p.dtype == torch.float16 and p.ndim == 4 and p.shape[:2] == g.shape[:2] and p.shape[-1] == embed_dim
    if not shape_ok:
        raise UserError(f"{name}: unexpected feature dtype/shape: global {tuple(g.shape)} {g.dtype}"
                        + (f", patches {tuple(tensors['patches'].shape)}" if "patches" in tensors else "")
                        + f" (expected fp16 [N={len(keys)}, V, {embed_dim}])")
    return _run_suite(name, feature_table(tensors, keys), [
        E.ExpectTableRowCountToEqual(value=len(expected_keys)),
        E.ExpectColumnValuesToBeUnique(column="key"),
        E.ExpectColumnValuesToBeInSet(column="finite", value_set=[True]),
        E.ExpectColumnValuesToBeBetween(column="min_norm", min_value=NORM_RANGE[0]),
        E.ExpectColumnValuesToBeBetween(column="max_norm", max_value=NORM_RANGE[1]),
        E.ExpectColumnValuesToBeBetween(column="label", min_value=0, max_value=n_classes - 1),
    ])


def validate_bank(classes, min_descriptions: int, name: str) -> dict:
    """Every class present once with finite features for the template and each ensemble, and (when the bank has
    descriptions) at least `min_descriptions` sentences per class."""
    E = _gx().expectations
    n = len(classes.names)
    counts = (torch.bincount(classes.sentence_labels, minlength=n).tolist() if classes.sentences is not None
              else None)
    finite = torch.ones(n, dtype=torch.bool)
    for t in classes.tensors().values():
        if t.is_floating_point() and t.shape[0] == n:
            finite &= torch.isfinite(t).all(dim=-1)
    df = pl.DataFrame({"label": list(range(n)), "classname": classes.names, "finite": finite.tolist(),
                       **({"descriptions": counts} if counts is not None else {})})
    expectations = [E.ExpectColumnValuesToBeUnique(column="label"),
                    E.ExpectColumnValuesToNotBeNull(column="classname"),
                    E.ExpectColumnValuesToBeInSet(column="finite", value_set=[True])]
    if counts is not None:
        expectations.append(E.ExpectColumnValuesToBeBetween(column="descriptions", min_value=min_descriptions))
    return _run_suite(name, df, expectations)
