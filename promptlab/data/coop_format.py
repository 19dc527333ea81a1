"""Reading CoOp-format datasets (image folder + split_zhou JSON), few-shot sampling and the base/new split,
exactly per docs/protocols.md. Datasets without a split JSON (ImageNet and its variants, FGVC-Aircraft) are read by
readers.py into the same `dict[split, list[Item]]`."""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from pathlib import Path

from promptlab.data.registry import DatasetSpec
from promptlab.errors import UserError

SPLITS = ("train", "val", "test")


@dataclass(frozen=True, slots=True)  # slots: ImageNet lists 1.28M of these
class Item:
    """One labelled image. `path` is relative to the dataset's image folder, as in the split file."""

    split: str
    path: str
    label: int
    classname: str


def read_split(spec: DatasetSpec, root: str | Path) -> dict[str, list[Item]]:
    """Items per split, class names per `final_name`. Errors name the file and the offending entry."""
    split_file = spec.split_file(root)
    if split_file is None or not split_file.exists():
        raise UserError(f"{spec.id}: split file missing: {split_file}")
    try:
        raw = json.loads(split_file.read_text())
    except json.JSONDecodeError as exc:
        msg = f"{spec.id}: split file is not valid JSON ({exc.msg}, line {exc.lineno}): {split_file}"
        raise UserError(msg) from None
    image_dir = spec.image_dir(root).resolve()
    out: dict[str, list[Item]] = {}
    for split in SPLITS:
        items = []
        for entry in raw.get(split, []):
            try:
                path, label, classname = entry
                label = int(label)
            except (TypeError, ValueError):
                raise UserError(f"{spec.id}: split entry is not [path, label, classname]: {entry!r} in "
                                f"{split_file}") from None
            check_inside(spec, image_dir, path, split_file)
            check_label(spec, split, path, label, split_file)
            items.append(Item(split, path, label, final_name(spec, classname)))
        out[split] = items
    return out


def final_name(spec: DatasetSpec, raw: str) -> str:
    """CoOp's class name: its rename table (datasets.yaml `rename`), then `_` -> space as CoOp's prompt
    learner does before prompting."""
    return spec.rename.get(raw, raw).replace("_", " ")


def check_inside(spec: DatasetSpec, image_dir: Path, path: str, source: Path) -> None:
    """A listed image path must stay inside the (resolved) image folder: no `..`, no absolute paths."""
    if not (image_dir / path).resolve().is_relative_to(image_dir):
        raise UserError(f"{spec.id}: split entry escapes the dataset folder: {path!r} in {source}")


def check_label(spec: DatasetSpec, split: str, path: str, label: int, source: Path) -> None:
    """Labels are 0-based, and below the dataset's class count where CoOp's data fixes one (without one, a label
    past the last class shows up as empty classes in `classnames`)."""
    if label < 0:
        raise UserError(f"{spec.id}: {split} entry {path!r} has label {label}, labels are 0-based: {source}")
    if spec.n_classes is not None and not spec.relabel and label >= spec.n_classes:
        raise UserError(f"{spec.id}: {split} entry {path!r} has label {label}, out of range for "
                        f"{spec.n_classes} classes (0..{spec.n_classes - 1}): {source}")


def classnames(items: list[Item], dataset: str = "") -> list[str]:
    """Class names indexed by label. Labels must run 0..N-1 with one name each: a label with two names, or a
    gap (empty classes, or a label past the last class), is an error naming the label and an item."""
    prefix = f"{dataset}: " if dataset else ""
    first: dict[int, Item] = {}
    for it in items:
        seen = first.setdefault(it.label, it)
        if seen.classname != it.classname:
            raise UserError(f"{prefix}label {it.label} has two class names: {seen.classname!r} ({item_ref(seen)}) "
                            f"and {it.classname!r} ({item_ref(it)})")
    n = max(first) + 1 if first else 0
    empty = missing_labels(first, n)
    if empty:
        top = first[n - 1]
        raise UserError(f"{prefix}labels {_some(empty)} have no items (empty classes) but label {top.label} has "
                        f"({item_ref(top)}): labels must run 0..N-1, is {top.label} out of range?")
    return [first[i].classname for i in range(n)]


def missing_labels(labels, n_classes: int) -> list[int]:
    """The labels in 0..n_classes-1 that `labels` (any iterable of ints) does not contain."""
    present = set(labels)
    return [i for i in range(n_classes) if i not in present]


def empty_classes(spec: DatasetSpec, splits: dict[str, list[Item]], names: list[str]) -> list[str]:
    """One line per split that lacks some class: every class needs test items (it is evaluated), and train
    items unless the dataset is test-only (the few-shot draw takes its shots from train)."""
    needed = ("test",) if spec.test_only else ("train", "test")
    problems = []
    for split in needed:
        empty = missing_labels((it.label for it in splits[split]), len(names))
        if empty:
            named = _some([f"{i} {names[i]!r}" for i in empty])
            problems.append(f"{spec.id}: no {split} items for {len(empty)} of {len(names)} classes: labels {named}")
    return problems


def class_count_problem(spec: DatasetSpec, n: int, where: str = "") -> str | None:
    """The line for a class count other than the expected one (None when it matches or none is expected). For
    a built-in id it says why one is expected (the id means CoOp's full data) and where other data goes."""
    if spec.n_classes is None or n == spec.n_classes:
        return None
    if spec.custom:
        return f"{n} classes{where}, data.custom_datasets.{spec.id}.n_classes expects {spec.n_classes}"
    return (f"{n} classes{where}, CoOp's data has {spec.n_classes} ({spec.id!r} means CoOp's full dataset; a class "
            "subset or your own data: give it its own id in data.custom_datasets, README \"Your own dataset\")")


def item_ref(item: Item) -> str:
    """Where an item comes from, for error messages: its split and path, e.g. `train 'dog/train_0.jpg'`."""
    return f"{item.split} {item.path!r}"


def _some(values: list, n: int = 5) -> str:
    shown = ", ".join(str(v) for v in values[:n])
    return f"[{shown}{f', … {len(values) - n} more' if len(values) > n else ''}]"


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
