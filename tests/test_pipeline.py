"""End to end: the real `dvc repro` on a micro configuration in a temporary git repo (a few minutes)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from dvc_helpers import ENV, REPO, make_repo, merge, out_hashes as _out_hashes, sh as _sh

MICRO = {
    "world": {"train_per_class": 3, "val_per_class": 2, "test_per_class": 2},
    "pretrain": {"steps": 3, "batch_size": 16, "eval_per_class": 1, "warmup_steps": 1},
    "data": {"shots": 2, "seeds": [1]},
    "features": {"batch_size": 64, "train_views": 2},
    **{m: {"epochs": 2, "batch_size": 8} for m in ("coop", "kgcoop", "prograd", "dualview", "pbprompt", "aape")},
    "cocoop": {"epochs": 1, "batch_size": 8},
    **{m: {"epochs": 1, "batch_size": 8} for m in ("ivlp", "maple", "promptsrc")},  # pixel methods
    "eval": {"few_shot": {"datasets": ["synthetic"], "shots": [1, 2], "methods": ["zeroshot", "coop", "linear_probe"],
                          "epochs": None}},
}


def _micro_repo(tmp: Path) -> Path:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    return make_repo(tmp / "repo", merge(params, MICRO))


@pytest.mark.slow
def test_dvc_repro_end_to_end_then_noop(tmp_path):
    repo = _micro_repo(tmp_path)
    dvc = [sys.executable, "-m", "dvc"]
    _sh(dvc + ["repro"], repo)

    summary = json.loads((repo / "metrics/summary.json").read_text())
    b2n = summary["base2new"]
    assert set(b2n) == {"synthetic", "average"}
    methods = yaml.safe_load((repo / "params.yaml").read_text())["methods"]
    assert len(methods) >= 10 and set(b2n["average"]) == set(methods)  # the default runs every method
    probe = b2n["synthetic"].pop("linear_probe")  # closed vocabulary: base only
    assert 0 <= probe["base"] <= 100 and probe["new"] is None and probe["hm"] is None
    for method, row in b2n["synthetic"].items():
        assert 0 <= row["base"] <= 100 and 0 <= row["new"] <= 100
        hm = 2 * row["base"] * row["new"] / (row["base"] + row["new"]) if row["base"] + row["new"] else 0
        assert row["hm"] == pytest.approx(hm, abs=1e-3)
        assert row["counts"]["1"]["base"][1] == 24 * 2  # 24 base classes x 2 test images
    for method in methods:
        shift = summary["domain_shift"]["synthetic"][method]
        assert {"synthetic", "synthetic_sketch", "synthetic_noise"} <= set(shift)
        cross = summary["cross_dataset"]["synthetic"][method]
        assert cross["synthetic"] == shift["synthetic"]  # one all-class training, evaluated for both
        assert (cross["synthetic_shapes"] is None) == (method == "linear_probe")  # closed vocabulary: foreign classes
    few = summary["few_shot"]["synthetic"]
    assert set(few) == {"zeroshot", "coop", "linear_probe"}  # eval.few_shot.methods
    assert few["coop"]["2"] == summary["domain_shift"]["synthetic"]["coop"]["synthetic"]  # the full draw: shared
    assert few["zeroshot"]["1"] == few["zeroshot"]["2"]  # nothing trained: shots do not matter

    manifest = (repo / "data/shards/synthetic/manifest.csv").read_text().splitlines()
    assert manifest[0] == "key,split,label,classname,path,sha256,shard"
    assert (repo / "models/tiny_clip/open_clip_model.safetensors").stat().st_size > 1_000_000
    assert "zero_shot" in json.loads((repo / "metrics/pretrain.json").read_text())

    # A second repro re-runs only `listing` (always_changed: it is how changes under data.root are seen), whose
    # files come out the same, so nothing downstream runs.
    second = _sh(dvc + ["repro"], repo)
    assert re.findall(r"Running stage '([^']+)'", second) == ["listing"]
    status = _sh(dvc + ["status"], repo)
    assert re.findall(r"^(\S+):", status, flags=re.M) == ["listing"] and "always changed" in status

    # Determinism: re-running stages from scratch on CPU gives byte-identical outputs (the dvc.lock hashes).
    first = _out_hashes(repo)
    _sh(dvc + ["repro", "--force", "--single-item", "shard@synthetic", "features@synthetic", "descriptions@synthetic",
               "prompts@synthetic",
               "run@coop", "run@pbprompt", "run@linear_probe", "report"], repo)
    assert _out_hashes(repo) == first

    # Kill -9 in the middle of a stage: nothing half-written is left for DVC to take as valid, and the next
    # `dvc repro` completes with the same result.
    proc = subprocess.Popen(dvc + ["repro", "--force", "--single-item", "run@dualview"], cwd=repo, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while not list((repo / "models/prompts").glob(".dualview.*.tmp")) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, "the stage finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (repo / "models/prompts/dualview/base2new").exists()
    assert "run@dualview" in _sh(dvc + ["status"], repo)
    _sh(dvc + ["repro"], repo)
    assert _out_hashes(repo) == first
    assert not list((repo / "models/prompts").glob(".*.tmp")), "leftovers of the killed run were not cleared"


def test_no_stage_hashes_data_root_itself():
    """DVC hashes a directory dependency file by file, per stage, on every status: the stages that read
    data.root depend on their dataset's listing (stage `listing`, re-run on every repro) instead."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        assert "${data.root}" not in stage.get("deps", []), name
    for name in ("shard", "shard_target", "descriptions", "descriptions_target"):
        assert "data/listings/${item.dataset}.json" in stages[name]["deps"], name
    listing = stages["listing"]
    assert listing["always_changed"] is True and listing["outs"] == ["data/listings"]
    assert "${embedded.after_world}" in listing["deps"]  # after the synthetic world, where it is built
    assert yaml.safe_load((REPO / "params.yaml").read_text())["embedded"]["after_world"] == "data/raw/world.json"


def test_dvc_parses_yaml_with_ruamels_c_loader():
    """A `dvc repro` parses params.yaml once per stage (36 times on the default pipeline) plus dvc.yaml and
    dvc.lock. ruamel.yaml 0.19 made its C loader optional (the `ruamel.yaml.clib` dependency in
    pyproject.toml); without it the pure-Python parser made a no-op `dvc repro` about 1 s slower (3.4-3.9 s
    against 2.4-2.6 s measured; BENCHMARKS.md)."""
    from ruamel.yaml import YAML
    from ruamel.yaml.main import CParser

    assert CParser is not None, "ruamel.yaml.clib is not installed: uv sync --frozen"
    assert YAML(typ="safe").Parser is CParser  # the loader dvc/utils/serialize/_yaml.py asks for
    # ...and it reads the project's files, and the YAML 1.1/1.2 corner cases a params value may hit, exactly as
    # the pure-Python parser does (same types: 1e-4 a float, yes/on strings, 0o10 octal)
    corners = "a: 1e-4\nb: yes\nc: on\nd: 0o10\ne: 010\nf: 1_000\ng: .inf\nh: ~\n"
    for text in [corners] + [(REPO / name).read_text() for name in ("params.yaml", "dvc.yaml", "dvc.lock")]:
        assert YAML(typ="safe").load(text) == YAML(typ="safe", pure=True).load(text)
