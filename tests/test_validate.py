"""The great-expectations gates: manifests, feature files, prompt banks. Each failure names the suite and the
failed expectation, and the JSON report is written before the stage stops."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import torch

from promptlab.errors import UserError
from promptlab.validate import gate, validate_bank, validate_features, validate_manifest


def _manifest(n_classes: int = 3) -> pl.DataFrame:
    rows = [(f"{split}_{c}_{i}", split, c) for split in ("train", "test") for c in range(n_classes) for i in range(2)]
    return pl.DataFrame({"key": [r[0] for r in rows], "split": [r[1] for r in rows], "label": [r[2] for r in rows],
                         "sha256": ["a" * 64] * len(rows)})


def test_manifest_passes_and_writes_its_report(tmp_path):
    report = validate_manifest(_manifest(), 3, name="m", report=tmp_path / "r.json")
    assert report["success"] and report["failed"] == [] and report["evaluated"] == 6
    assert json.loads((tmp_path / "r.json").read_text()) == report


def test_a_passing_suite_prints_nothing(capfd):
    """GX's tqdm bars ("Calculating Metrics") go to stderr unless switched off: a gate prints nothing."""
    validate_manifest(_manifest(), 3, name="m")
    out, err = capfd.readouterr()
    assert "Calculating Metrics" not in err and err == "" and out == ""


QUIET_SCRIPT = """
import logging
logging.basicConfig(level=logging.INFO, format="LOG %(name)s %(levelname)s %(message)s")
import polars as pl
from promptlab.validate import validate_manifest
rows = [(f"{s}_{c}", s, c) for s in ("train", "test") for c in range(3)]
df = pl.DataFrame({"key": [r[0] for r in rows], "split": [r[1] for r in rows], "label": [r[2] for r in rows],
                   "sha256": ["a" * 64] * len(rows)})
validate_manifest(df, 3, name="m")
logging.getLogger("promptlab").info("still on")
"""


def test_a_stage_with_info_logging_sees_no_gx_lines():
    """In a fresh process (GX logs INFO lines at import) with logging at INFO, validation adds no line: only the
    process's own INFO line reaches stderr."""
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", QUIET_SCRIPT], capture_output=True, text=True, cwd=root,
                          env={"PYTHONPATH": str(root), "PATH": ""}, check=True)
    assert done.stderr.splitlines() == ["LOG promptlab INFO still on"], done.stderr[:2000]


def test_manifest_failures_are_named_and_reported(tmp_path):
    bad = _manifest().with_columns(pl.when(pl.col("key") == "train_0_0").then(7).otherwise(pl.col("label"))
                                   .alias("label"))
    bad = bad.filter(~((pl.col("split") == "test") & (pl.col("label") == 2)))  # class 2 loses its test samples
    with pytest.raises(UserError) as info:
        validate_manifest(bad, 3, name="m", report=tmp_path / "r.json")
    msg = str(info.value)
    assert msg.startswith("validation failed: m: expect_column_values_to_be_between(label) 1 rows e.g. 7")
    assert "; m: expect_column_values_to_be_between(test_samples) 1 rows e.g. label 2 (report" in msg and "r.json" in msg
    written = json.loads((tmp_path / "r.json").read_text())
    assert not written["success"] and [f["column"] for f in written["failed"]] == ["label", "test_samples"]


def _features(n: int = 6, views: int = 2, dim: int = 8) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return {"global": torch.randn(n, views, dim, generator=gen).half(), "labels": torch.arange(n) % 3,
            "patches": torch.randn(n, views, 4, dim, generator=gen).half()}


def test_features_pass_then_fail_on_non_finite_and_zero_rows():
    keys = [f"k{i}" for i in range(6)]
    ok = validate_features(_features(), keys, keys, 3, 8, name="f")
    assert ok["success"] and ok["evaluated"] == 6
    bad = _features()
    bad["patches"][1, 0, 2, 3] = float("inf")
    bad["global"][4, 1] = 0.0
    report = validate_features(bad, keys, keys, 3, 8, name="f")
    assert {f["column"]: f["unexpected_count"] for f in report["failed"]} == {"finite": 1, "min_norm": 1}
    with pytest.raises(UserError, match="f: expect_column_values_to_be_in_set\\(finite\\) 1 rows"):
        gate(report)


def test_features_must_match_the_manifest_and_the_format():
    keys = [f"k{i}" for i in range(6)]
    with pytest.raises(UserError, match="do not match the manifest .* first difference at row 2"):
        validate_features(_features(), keys, keys[:2] + ["x"] + keys[3:], 3, 8, name="f")
    wrong = _features()
    wrong["global"] = wrong["global"].float()
    with pytest.raises(UserError, match="unexpected feature dtype/shape"):
        validate_features(wrong, keys, keys, 3, 8, name="f")


def test_bank_needs_every_class_and_enough_descriptions(class_set):
    assert validate_bank(class_set, 2, name="b")["success"]  # the fixture has 2 sentences per class
    report = validate_bank(class_set, 3, name="b")
    assert [(f["column"], f["unexpected_count"]) for f in report["failed"]] == [("descriptions", len(class_set))]
    broken = class_set.subset(list(range(len(class_set))))
    broken.hand_features = broken.hand_features.clone()
    broken.hand_features[2, 0] = float("nan")
    assert [f["column"] for f in validate_bank(broken, 1, name="b")["failed"]] == ["finite"]
