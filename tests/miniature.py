"""A miniature default world on disk for run-flow tests (imported like dvc_helpers: tests/ is on sys.path):
the synthetic world's dataset folder, its shard stage's output and its prompt bank, built with the
project's own stage functions."""

from __future__ import annotations

from pathlib import Path

import torch

from promptlab.data.registry import DATASETS
from promptlab.data.shards import write_shards
from promptlab.data.synthetic import write_world
from promptlab.io import read_json, save_tensors
from promptlab.prompts.bank import build_class_set


def shards_and_bank(tmp: Path, frozen_clip, shots: int, seeds: list[int],
                    maxcount: int) -> tuple[Path, Path, list[str]]:
    """World (2 train, 1 val, 1 test image per class, photo only) under tmp/raw, its shards under tmp/shards and
    the "a photo of a {}." bank under tmp/prompts; returns (shards, banks, class names)."""
    root, shards, banks = tmp / "raw", tmp / "shards", tmp / "prompts"
    write_world(root, seed=0, image_size=32, train_per_class=2, val_per_class=1, test_per_class=1,
                shifted_domains=[])
    (shards / "synthetic").mkdir(parents=True)
    write_shards(DATASETS["synthetic"], root, shards / "synthetic", shots=shots, seeds=seeds, maxcount=maxcount,
                 log=lambda _: None)
    names = read_json(shards / "synthetic" / "classnames.json")
    with torch.no_grad():
        classes = build_class_set(frozen_clip.text, names, "a photo of a {}.", ensembles=())
    save_tensors(banks / "synthetic" / "bank.safetensors", classes.tensors(),
                 {"classnames": names, "template": classes.template})
    return shards, banks, names
