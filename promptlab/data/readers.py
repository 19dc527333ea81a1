"""One reader per layout of CoOp's $DATA (datasets.yaml `reader`), all returning `dict[split, list[Item]]`.

- split_json     image folder + split_zhou JSON (coop_format.read_split)
- class_folders  one folder per class: ImageNet (images/train, images/val), ImageNet-V2 (folders 0..999),
                 ImageNet-Sketch (all 1000 wnids), ImageNet-A/-R (the 200 wnid folders present, sorted).
                 Class names come from classnames.txt (`<wnid> <name…>`), keyed by wnid or line, never by name
                 (ImageNet repeats names).
- variant_lists  FGVC-Aircraft: variants.txt (one class per line) + `<image id> <variant…>` lines per split

Files are listed sorted (never in directory order) and hidden entries are skipped, as Dassl's listdir_nohidden
does. Listing costs one scandir per class folder (no per-file stat), so ImageNet's 1.28M files list in seconds.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from promptlab.data.coop_format import SPLITS, Item, check_inside, final_name, read_split
from promptlab.data.registry import DatasetSpec
from promptlab.errors import UserError

FGVC_IMAGE_SUFFIX = ".jpg"  # variant lists name images by id; CoOp's reader appends ".jpg"


def read_dataset(spec: DatasetSpec, root: str | Path) -> dict[str, list[Item]]:
    """Items per split (all three keys). Missing or malformed data -> one UserError line naming the dataset and
    what is wrong, plus where to get it."""
    try:
        require(spec, root)
        return read_items(spec, root)
    except UserError as exc:
        raise UserError(f"{exc} (get it: {spec.hint}; full list: "
                        f"python -m promptlab check-data --root {root} --dataset {spec.id})") from None


def read_items(spec: DatasetSpec, root: str | Path) -> dict[str, list[Item]]:
    """The spec's reader; with `relabel`, the labels present renumbered 0..N-1 in their order (a split file cut
    down to a class subset keeps CoOp's labels, with gaps)."""
    splits = READERS[spec.reader](spec, root)
    if not spec.relabel:
        return splits
    new = {old: i for i, old in enumerate(sorted({it.label for v in splits.values() for it in v}))}
    return {s: [Item(it.split, it.path, new[it.label], it.classname) for it in v] for s, v in splits.items()}


def require(spec: DatasetSpec, root: str | Path) -> None:
    """The first of spec.required() that does not exist -> UserError."""
    for what, path in spec.required(root):
        if not path.exists():
            raise UserError(f"{spec.id}: {what} missing: {path}")


# --- class_folders ------------------------------------------------------------------------------------------------


def read_class_folders(spec: DatasetSpec, root: str | Path) -> dict[str, list[Item]]:
    """Each split folder (split_folders) holds one folder per class; which folders and which labels is the
    `classes` rule. Item paths are `<split folder>/<class folder>/<file>` relative to the image folder.
    `named` (your own data, no classnames file): the train folder's class folders (test's when there is no
    train), sorted, are the classes of every split."""
    entries = read_wnid_lines(spec, spec.classnames_file(root)) if spec.classnames else []
    out: dict[str, list[Item]] = {s: [] for s in SPLITS}
    ordered = sorted(spec.split_folders.items(), key=lambda kv: SPLITS.index(kv[0]))  # train first
    classes = None
    for split, sub in ordered:
        base = spec.image_dir(root) / sub
        if classes is None or spec.classes != "named":
            classes = class_list(spec, entries, base)
        out[split] = folder_items(spec, split, base, "" if sub == "." else f"{sub}/", *classes)
    return out


def read_wnid_lines(spec: DatasetSpec, path: Path) -> list[tuple[str, str]]:
    """classnames.txt -> [(wnid, raw name)] in line order (CoOp: first word = folder, the rest = name)."""
    entries, seen = [], set()
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        wnid, *words = line.strip().split(" ")
        if not words or wnid in seen:
            why = "no class name" if not words else f"repeats folder {wnid!r}"
            raise UserError(f"{spec.id}: line {lineno} of {path} {why}: {line!r}")
        seen.add(wnid)
        entries.append((wnid, " ".join(words)))
    return entries


def class_list(spec: DatasetSpec, entries: list[tuple[str, str]], base: Path) -> tuple[list[str], list[str]]:
    """(class folder per label, raw name per label) under `base` by the spec's `classes` rule."""
    if spec.classes == "listed":
        return [w for w, _ in entries], [n for _, n in entries]
    if spec.classes == "numbered":
        return [str(i) for i in range(len(entries))], [n for _, n in entries]
    if spec.classes == "named":
        folders = sorted(subdirs(base))
        return folders, folders
    name_of = dict(entries)  # present: the wnid folders there are, sorted; each must be a classnames.txt wnid
    folders = sorted(subdirs(base))
    unknown = [f for f in folders if f not in name_of]
    if unknown:
        raise UserError(f"{spec.id}: {_count(unknown, 'folder')} under {base} not in {spec.classnames}: "
                        f"{_first(unknown)}")
    return folders, [name_of[f] for f in folders]


def folder_items(spec: DatasetSpec, split: str, base: Path, prefix: str, folders: list[str],
                 names: list[str]) -> list[Item]:
    """Items of `folders` (label = position) under `base`, files sorted; every folder must exist and no other
    folder may (an extra folder would shift CoOp's labels)."""
    present = subdirs(base)
    missing = [f for f in folders if f not in present]
    if missing:
        raise UserError(f"{spec.id}: {_count(missing, 'class folder')} of {len(folders)} missing under {base}: "
                        f"{_first(missing)}")
    extra = sorted(present - set(folders))
    if extra:
        classes = spec.classnames or "the first split folder"
        raise UserError(f"{spec.id}: {_count(extra, 'folder')} under {base} not classes of {classes}: "
                        f"{_first(extra)}")
    items = []
    for label, (folder, raw) in enumerate(zip(folders, names)):
        name = final_name(spec, raw)
        items.extend(Item(split, f"{prefix}{folder}/{f}", label, name) for f in list_files(base / folder))
    return items


def subdirs(path: Path) -> set[str]:
    with os.scandir(path) as it:
        return {e.name for e in it if not e.name.startswith(".") and e.is_dir()}


def list_files(path: Path) -> list[str]:
    """Non-hidden regular files, sorted (d_type from scandir: no stat per file on common filesystems)."""
    with os.scandir(path) as it:
        return sorted(e.name for e in it if not e.name.startswith(".") and e.is_file())


# --- variant_lists ------------------------------------------------------------------------------------------------


def read_variant_lists(spec: DatasetSpec, root: str | Path) -> dict[str, list[Item]]:
    """FGVC-Aircraft as CoOp reads it: label = line of variants.txt; each split file line is
    `<image id> <variant name…>` and names the image `<image id>.jpg` in the image folder."""
    classes_file = spec.classnames_file(root)
    variants = [line.strip() for line in classes_file.read_text().splitlines() if line.strip()]
    label_of = {name: i for i, name in enumerate(variants)}
    if len(label_of) != len(variants):
        raise UserError(f"{spec.id}: {classes_file} lists a class twice")
    image_dir = spec.image_dir(root).resolve()
    out: dict[str, list[Item]] = {s: [] for s in SPLITS}
    for split, name in spec.split_files.items():
        out[split] = _variant_items(spec, split, spec.dataset_dir(root) / name, label_of, image_dir)
    return out


def _variant_items(spec: DatasetSpec, split: str, path: Path, label_of: dict[str, int],
                   image_dir: Path) -> list[Item]:
    items = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        image_id, *words = line.strip().split(" ")
        variant = " ".join(words)
        if variant not in label_of:
            raise UserError(f"{spec.id}: line {lineno} of {path}: class {variant!r} is not in {spec.classnames}")
        image = image_id + FGVC_IMAGE_SUFFIX
        check_inside(spec, image_dir, image, path)
        items.append(Item(split, image, label_of[variant], final_name(spec, variant)))
    return items


def _count(names: list[str], what: str) -> str:
    return f"{len(names)} {what}{'' if len(names) == 1 else 's'}"


def _first(names: list[str], n: int = 5) -> str:
    return ", ".join(names[:n]) + (f", … ({len(names) - n} more)" if len(names) > n else "")


READERS: dict[str, Callable[[DatasetSpec, str | Path], dict[str, list[Item]]]] = {
    "split_json": read_split,
    "class_folders": read_class_folders,
    "variant_lists": read_variant_lists,
}
