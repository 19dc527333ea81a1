"""Dataset ids and where they live under data.root; the table itself is data (datasets.yaml)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

READER_KINDS = ("split_json", "class_folders", "variant_lists")  # datasets.yaml `reader`; the functions: readers.READERS
CLASS_RULES = ("listed", "present", "numbered", "named")


@dataclass(frozen=True)
class DatasetSpec:
    """One row of datasets.yaml. Fields a reader kind does not use stay at their defaults.

    reader        how items are found: `split_json` (split_zhou JSON), `class_folders` (one folder per class,
                  ImageNet and its variants), `variant_lists` (FGVC-Aircraft's `<id> <class name>` text files)
    images        the image folder, relative to the dataset folder; item paths are relative to it
    split         split_json: the split_zhou JSON file
    classnames    class_folders: `<wnid> <name…>` per line; variant_lists: one class name per line
    classes       class_folders: `listed` (one folder per classnames line, named by its wnid, label = line),
                  `present` (the wnid folders present, sorted, label = position), `numbered` (folder i = line i),
                  `named` (no classnames file: the first split's folders, sorted, are the classes and their
                  names; every other split must have the same folders)
    split_folders class_folders: split -> subfolder of `images` holding that split's class folders
    split_files   variant_lists: split -> text file in the dataset folder
    rename        raw class name -> CoOp's name (applied before `_` -> space; a no-op on CoOp's own split files)
    val_from_train  no val split in the data: shards.py draws the few-shot val from train, disjoint from the
                  seed's train shots
    n_classes     the class count CoOp's data has (checked by the shard stage and check-data); null = unchecked
    relabel       renumber the labels present 0..N-1 in order (a split file cut down to a class subset)
    generated     built by this pipeline (the synthetic world), not downloaded
    hint          where CoOp's instructions say to get the data
    """

    id: str
    folder: str
    images: str
    split: str | None = None
    template: str = "a photo of a {}."
    test_only: bool = False
    reader: str = "split_json"
    classnames: str | None = None
    classes: str = "listed"
    split_folders: dict[str, str] = field(default_factory=dict, hash=False)
    split_files: dict[str, str] = field(default_factory=dict, hash=False)
    rename: dict[str, str] = field(default_factory=dict, hash=False)
    val_from_train: bool = False
    n_classes: int | None = None
    relabel: bool = False
    generated: bool = False
    custom: bool = False  # declared in params.yaml (data.custom_datasets), not in datasets.yaml
    hint: str = ""

    def __post_init__(self):
        if self.reader not in READER_KINDS:
            raise ValueError(f"datasets.yaml: {self.id}: unknown reader {self.reader!r} (allowed: {READER_KINDS})")
        if self.classes not in CLASS_RULES:
            raise ValueError(f"datasets.yaml: {self.id}: unknown classes rule {self.classes!r}")

    def dataset_dir(self, root: str | Path) -> Path:
        return Path(root) / self.folder

    def image_dir(self, root: str | Path) -> Path:
        return Path(root) / self.folder / self.images

    def split_file(self, root: str | Path) -> Path | None:
        return Path(root) / self.folder / self.split if self.split else None

    def classnames_file(self, root: str | Path) -> Path | None:
        return Path(root) / self.folder / self.classnames if self.classnames else None

    def required(self, root: str | Path) -> list[tuple[str, Path]]:
        """(what, path) that must exist before items can be read, outermost first: the dataset folder, then the
        files and folders the reader opens. check-data reports the missing ones; readers stop at the first."""
        out = [("dataset folder", self.dataset_dir(root))]
        if self.split:
            out.append(("split file", self.split_file(root)))
        if self.classnames:
            out.append((self.classnames, self.classnames_file(root)))
        out += [(f"{s} list", self.dataset_dir(root) / f) for s, f in self.split_files.items()]
        out.append(("image folder", self.image_dir(root)))
        out += [(f"{s} folder", self.image_dir(root) / sub) for s, sub in self.split_folders.items() if sub != "."]
        return out


def _load() -> dict[str, DatasetSpec]:
    table = yaml.safe_load((Path(__file__).with_name("datasets.yaml")).read_text())
    return {k: DatasetSpec(id=k, images=str(v.pop("images")), **v) for k, v in table.items()}


BUILTIN: dict[str, DatasetSpec] = _load()
# Dataset ids -> where they live under data.root (CoOp's $DATA layout, docs/architecture.md), how their items are read
# and their hand-crafted template (CoOp's CUSTOM_TEMPLATES). `test_only` datasets have no train/val and serve as
# domain-shift targets. DATASETS = the built-in table + the data.custom_datasets of the params loaded last
# (promptlab.config registers them), so every stage looks both up the same way.
DATASETS: dict[str, DatasetSpec] = dict(BUILTIN)
REAL_DATASETS: list[str] = [k for k, spec in BUILTIN.items() if not spec.generated]


def custom_spec(dataset_id: str, folder: str, images: str, split: str | None, split_folders: dict | None,
                **fields) -> DatasetSpec:
    """A params-declared dataset (data.custom_datasets.<id>): a split_zhou JSON, or one folder per class under
    each split folder (names = folder names); everything else as in datasets.yaml."""
    layout = ({"reader": "split_json", "split": split} if split else
              {"reader": "class_folders", "classes": "named", "split_folders": dict(split_folders or {})})
    return DatasetSpec(id=dataset_id, folder=folder, images=images, custom=True,
                       hint=f"your own dataset: data.custom_datasets.{dataset_id} in params.yaml", **layout, **fields)


def use_custom(specs: dict[str, DatasetSpec]) -> None:
    """DATASETS = the built-in table + `specs` (in place: modules hold a reference to it)."""
    DATASETS.clear()
    DATASETS.update(BUILTIN)
    DATASETS.update(specs)


def dataset_spec(dataset_id: str) -> DatasetSpec:
    """The spec of a built-in or registered custom dataset; an unknown id is one UserError line."""
    from promptlab.errors import UserError

    if dataset_id not in DATASETS:
        raise UserError(f"unknown dataset {dataset_id!r} (allowed: {', '.join(sorted(DATASETS))}; your own: "
                        "declare it under data.custom_datasets)")
    return DATASETS[dataset_id]
