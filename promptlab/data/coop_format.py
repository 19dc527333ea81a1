"""Reading CoOp-format datasets (image folder + split_zhou JSON), few-shot sampling and the base/new split,
exactly per DESIGN.md §5."""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from pathlib import Path

from promptlab.data.registry import DatasetSpec
from promptlab.errors import UserError

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Item:
    """One labelled image. `path` is relative to the dataset's image folder, as in the split file."""

    split: str
    path: str
    label: int
    classname: str


def read_split(spec: DatasetSpec, root: str | Path) -> dict[str, list[Item]]:
    """Items per split, classnames with `_` -> space. Errors name the file and the offending entry."""
    split_file = spec.split_file(root)
    if not split_file.exists():
        raise UserError(f"{spec.id}: split file missing: {split_file}")
    raw = json.loads(split_file.read_text())
    image_dir = spec.image_dir(root).resolve()
    out: dict[str, list[Item]] = {}
    for split in SPLITS:
        items = []
        for entry in raw.get(split, []):
            path, label, classname = entry
            if not (image_dir / path).resolve().is_relative_to(image_dir):
                raise UserError(f"{spec.id}: split entry escapes the dataset folder: {path!r} in {split_file}")
            items.append(Item(split, path, int(label), classname.replace("_", " ")))
        out[split] = items
    return out


def classnames(items: list[Item]) -> list[str]:
    """Class names indexed by label; disagreeing names for one label are an error."""
    names: dict[int, str] = {}
    for it in items:
        if names.setdefault(it.label, it.classname) != it.classname:
            raise UserError(f"label {it.label} has two class names: {names[it.label]!r} and {it.classname!r}")
    n = max(names) + 1 if names else 0
    missing = [i for i in range(n) if i not in names]
    if missing:
        raise UserError(f"labels {missing[:5]} have no items (empty classes)")
    return [names[i] for i in range(n)]


def sample_few_shot(items: list[Item], shots: int, seed: int) -> list[Item]:
    """Per class, `shots` items without replacement (all if fewer), seeded by the run seed.

    Candidates are sorted by path first, so the draw never depends on file or directory listing order."""
    rng = random.Random(seed)
    by_label: dict[int, list[Item]] = {}
    for it in sorted(items, key=lambda it: (it.label, it.path)):
        by_label.setdefault(it.label, []).append(it)
    drawn = []
    for label in sorted(by_label):
        pool = by_label[label]
        drawn.extend(pool if len(pool) <= shots else rng.sample(pool, shots))
    return drawn


def base_new_labels(n_classes: int) -> tuple[list[int], list[int]]:
    """CoOp's convention: sorted labels, base = first ceil(n/2), new = the rest."""
    labels = list(range(n_classes))
    m = math.ceil(n_classes / 2)
    return labels[:m], labels[m:]
