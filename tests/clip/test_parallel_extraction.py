"""features.nproc: the features stage under torchrun (CPU, gloo, 2 processes) writes files byte-identical to
one process, each rank encoding a disjoint, sorted share of the shards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dvc_helpers import ENV, REPO, eurosat_root, random_checkpoint

from promptlab.clip.extract import rank_shards
from promptlab.data.shards import split_shards


def _stage(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**ENV, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True)


def _features(cwd: Path, params: dict, nproc: int, out: str) -> tuple[Path, str]:
    (cwd / "params.yaml").write_text(yaml.safe_dump({**params, "features": {**params["features"], "nproc": nproc}}))
    proc = _stage(cwd, str(REPO / "stages/features.py"), "--shards", "shards/eurosat", "--out", f"{out}/eurosat",
                  "--report", f"{out}/report.json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return cwd / out / "eurosat", proc.stderr


@pytest.mark.slow  # about 70 s here: three processes import torch
def test_two_torchrun_ranks_give_the_single_process_bytes(tmp_path):
    root = eurosat_root(tmp_path / "coop-data")
    ckpt = random_checkpoint(tmp_path / "vit.safetensors")
    params = {"model": {"name": "promptlab-tiny", "pretrained": str(ckpt)},
              "data": {"root": str(root), "datasets": ["eurosat"], "eval_datasets": [], "shots": 2, "seeds": [1],
                       "shard_maxcount": 3},
              "features": {"batch_size": 4, "train_views": 2, "crop_scale_min": 0.5, "patches": True},
              "eval": {"protocols": ["base2new"]}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    shard = _stage(tmp_path, str(REPO / "stages/shard.py"), "--dataset", "eurosat", "--out", "shards/eurosat",
                   "--report", "shard.json")
    assert shard.returncode == 0, shard.stderr[-2000:]
    tars = split_shards(tmp_path / "shards/eurosat", "train")
    assert len(tars) == 7  # 20 training images in shards of 3: ranks get shards 0,2,4,6 and 1,3,5

    one, log_one = _features(tmp_path, params, 1, "one")
    two, log_two = _features(tmp_path, params, 2, "two")
    # each rank encoded its own shards only: 3+3+3+2 and 3+3+3 of the 20 training images
    assert "eurosat/train: 20/20 images" in log_one
    assert "eurosat/train: 11/11 images" in log_two and "eurosat/train: 9/9 images" in log_two
    names = sorted(p.name for p in one.iterdir())
    assert names == ["test.safetensors", "train.safetensors", "val.safetensors"]
    assert sorted(p.name for p in two.iterdir()) == names  # no part file left in the output
    for name in names:
        assert (one / name).read_bytes() == (two / name).read_bytes(), name
    assert not list((tmp_path / "two").glob(".*.tmp"))  # the ranks' part folder is gone
    reports = json.loads((tmp_path / "two/report.json").read_text())
    assert [r["success"] for r in reports] == [True, True, True]


def test_rank_shards_are_disjoint_sorted_and_cover_the_split(tmp_path, monkeypatch):
    """webdataset's split_by_node under torchrun's RANK/WORLD_SIZE: shards r, r+N, ... of the sorted list."""
    for i in (3, 0, 4, 1, 2):
        (tmp_path / f"train-{i:06d}.tar").touch()
    shares = []
    for rank in range(2):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        shares.append([Path(t).name for t in rank_shards(tmp_path, "train")])
    assert shares == [["train-000000.tar", "train-000002.tar", "train-000004.tar"],
                      ["train-000001.tar", "train-000003.tar"]]
    monkeypatch.delenv("RANK")
    monkeypatch.delenv("WORLD_SIZE")
    assert len(rank_shards(tmp_path, "train")) == 5  # one process: every shard
