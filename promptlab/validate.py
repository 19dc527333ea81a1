"""great-expectations suites that gate the pipeline (imported lazily: GX takes seconds to import)."""

from __future__ import annotations

import polars as pl

from promptlab.errors import UserError


def _run_suite(name: str, df: pl.DataFrame, expectations: list) -> dict:
    import great_expectations as gx

    context = gx.get_context(mode="ephemeral")
    batch_def = (context.data_sources.add_pandas(name).add_dataframe_asset(name)
                 .add_batch_definition_whole_dataframe(name))
    suite = context.suites.add(gx.ExpectationSuite(name=name, expectations=expectations))
    validation = context.validation_definitions.add(gx.ValidationDefinition(name=name, data=batch_def, suite=suite))
    result = validation.run(batch_parameters={"dataframe": df.to_pandas()})
    failed = [r.expectation_config.type + "(" + str(r.expectation_config.kwargs.get("column", "")) + ")"
              for r in result.results if not r.success]
    report = {"suite": name, "success": bool(result.success), "failed": failed,
              "evaluated": len(result.results)}
    if not result.success:
        raise UserError(f"{name}: validation failed: {', '.join(failed)}")
    return report


def validate_manifest(manifest: pl.DataFrame, n_classes: int, name: str = "manifest") -> dict:
    """Keys unique, labels in range, splits known, sha256 present, every class has a test sample."""
    import great_expectations as gx

    test_labels = manifest.filter(pl.col("split") == "test")["label"].unique().sort().to_list()
    missing = sorted(set(range(n_classes)) - set(test_labels))
    if missing:
        raise UserError(f"{name}: classes without a test sample: {missing[:10]}")
    E = gx.expectations
    return _run_suite(name, manifest, [
        E.ExpectColumnValuesToBeUnique(column="key"),
        E.ExpectColumnValuesToNotBeNull(column="sha256"),
        E.ExpectColumnValueLengthsToEqual(column="sha256", value=64),
        E.ExpectColumnValuesToBeBetween(column="label", min_value=0, max_value=n_classes - 1),
        E.ExpectColumnValuesToBeInSet(column="split", value_set=["train", "val", "test"]),
    ])
