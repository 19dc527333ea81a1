"""The documented paper switch (`cp configs/paper.yaml params.yaml && dvc repro`) through DVC itself: no stage
of the embedded world or the tiny CLIP exists, and a repro on a miniature CoOp-format root with a local open_clip
checkpoint runs exactly model, method_code, listing, shard, descriptions, features, prompts, run and report."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
import yaml

from dvc_helpers import DVC, REPO, eurosat_root, lock_stages, make_repo, merge, random_checkpoint, sh, stages_run

def _paper_params(data_root: Path, checkpoint: Path) -> dict:
    """configs/paper.yaml made small: one dataset, cpu, one seed, 2 shots, two cheap methods, one epoch."""
    paper = yaml.safe_load((REPO / "configs/paper.yaml").read_text())
    return merge(paper, {
        "embedded": {"after_clip": str(checkpoint)},  # a local checkpoint: the model stage waits for its file
        "model": {"name": "promptlab-tiny", "pretrained": str(checkpoint), "device": "cpu"},
        "data": {"root": str(data_root), "datasets": ["eurosat"], "eval_datasets": [], "shots": 2, "seeds": [1]},
        "features": {"batch_size": 16, "train_views": 1, "num_workers": 0, "precision": "fp32", "patches": False},
        "methods": ["zeroshot", "coop"],
        "eval": {"protocols": ["base2new"]},
        "coop": {"epochs": 1, "batch_size": 4},
    })


def test_paper_config_generates_no_embedded_stage(tmp_path):
    """The unmodified configs/paper.yaml: DVC lists no world/pretrain stage and no dependency on their outputs."""
    repo = make_repo(tmp_path / "repo", yaml.safe_load((REPO / "configs/paper.yaml").read_text()))
    names = re.findall(r"^(\S+)", sh(DVC + ["stage", "list"], repo), flags=re.M)
    kinds = {n.split("@")[0] for n in names}
    assert kinds == {"model", "method_code", "listing", "shard", "shard_target", "features", "features_target", "descriptions",
                     "descriptions_target", "prompts", "prompts_target", "run", "report"}
    assert len([n for n in names if n.startswith("run@")]) == 10
    dag = sh(DVC + ["dag", "--md"], repo)
    assert "tiny_clip" not in dag and "world" not in dag and "pretrain" not in dag


@pytest.mark.slow  # about 2 minutes on a busy 2-core machine: 8 stage processes, 4 of them import torch
def test_paper_config_repro_runs_only_real_data_stages(tmp_path):
    root = eurosat_root(tmp_path / "coop-data")
    checkpoint = random_checkpoint(tmp_path / "weights" / "vit.safetensors")
    repo = make_repo(tmp_path / "repo", _paper_params(root, checkpoint))
    ran = stages_run(sh(DVC + ["repro"], repo))

    expected = ["model", "method_code", "listing", "shard@eurosat", "descriptions@eurosat", "features@eurosat", "prompts@eurosat", "run@zeroshot",
                "run@coop", "report"]
    assert sorted(ran) == sorted(expected) and ran[-1] == "report"
    lock = lock_stages(repo)
    assert sorted(lock) == sorted(expected)
    deps = {d["path"] for stage in lock.values() for d in stage.get("deps", [])}
    assert not any("tiny_clip" in d or d.startswith("data/raw") for d in deps), deps
    assert not (repo / "data/raw").exists() and not (repo / "models/tiny_clip").exists()

    # the record names the checkpoint and its sha256 (hashed here independently); features depend on it
    record = json.loads((repo / "models/model.json").read_text())
    assert record == {"name": "promptlab-tiny", "pretrained": str(checkpoint), "kind": "file", "file": str(checkpoint),
                      "sha256": hashlib.sha256(checkpoint.read_bytes()).hexdigest()}
    assert {d["path"] for d in lock["features@eurosat"]["deps"]} >= {"models/model.json", "data/shards/eurosat"}

    summary = json.loads((repo / "metrics/summary.json").read_text())
    for method in ("zeroshot", "coop"):
        row = summary["base2new"]["eurosat"][method]
        assert row["counts"]["1"]["base"][1] == 5 and row["counts"]["1"]["new"][1] == 5  # 5 classes x 1 test image
    assert stages_run(sh(DVC + ["repro"], repo)) == ["listing"]  # a second repro: only the data.root check


def _declared_params(methods: list[str], embedded: dict | None = None) -> set[str]:
    """Every params key dvc.yaml's stages declare, `${item.method}` expanded over `methods`; a stage whose
    matrix runs over an empty `embedded` list generates no stage and is left out."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    keys = set()
    for stage in stages.values():
        over = [v for v in stage.get("matrix", {}).values() if str(v).startswith("${embedded.")]
        if embedded is not None and any(not embedded[v[len("${embedded."):-1]] for v in over):
            continue
        for key in stage.get("params", []):
            keys |= {key.replace("${item.method}", m) for m in methods} if "${item.method}" in key else {key}
    return keys


def test_paper_config_holds_every_declared_param():
    """DVC refuses a stage whose declared params key is missing from params.yaml (`Parameters 'world' are
    missing`), even where the schema has a default: the paper config must spell out each one."""
    paper = yaml.safe_load((REPO / "configs/paper.yaml").read_text())
    missing = []
    for key in sorted(_declared_params(paper["methods"], paper["embedded"])):
        node = paper
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                missing.append(key)
                break
            node = node[part]
    assert not missing
    assert _declared_params(["coop"]) >= {"coop", "model", "data.shard_maxcount", "world"}  # it sees every stage
