"""Writing and reading a dataset's WebDataset shards and manifest.

Layout of one sharded dataset (out_dir):
    {split}-000000.tar ...   members per sample: <key>.<image ext> (the original bytes), <key>.cls (label)
    manifest.csv             key, split, label, classname, path, sha256, shard  (one row per sample, in shard order)
    fewshot.json             the drawn few-shot items per seed (keys), so a run's exact shots are versioned
    skipped.csv              images left out under `data.bad_images: skip`, and why
    classnames.json          class names indexed by label
Only what some run can use is sharded: the union of the few-shot draws over seeds for train (K per class)
and val (min(K, 4) per class), and the whole test split. A dataset without a val split (`val_from_train`:
ImageNet) draws its val shots from train, disjoint from the same seed's train shots; such rows have split
"val" and a train path, and their own keys.

Bad images (missing, zero-byte, undecodable: each sharded image is fully decoded once, so the features stage
never meets one): with `bad_images="error"` the first stops the stage with one line naming it; with "skip" each
is left out and listed in skipped.csv (split, path, label, classname, reason; a header only when none). A skip
run's output equals an "error" run's on split files without the skipped entries: few-shot draws are made over
readable items only (`select_readable`).

Memory: the listing (paths and labels, ~150 bytes an item: ~200 MB for ImageNet's 1.33M files) is held
while drawing; image bytes are streamed one sample at a time from disk into the tar being written.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import io
import re
import sys
from pathlib import Path

import polars as pl
import webdataset as wds

from promptlab.data.coop_format import Item, class_count_problem, classnames, empty_classes, sample_few_shot
from promptlab.data.readers import read_dataset
from promptlab.data.registry import DatasetSpec
from promptlab.errors import UserError
from promptlab.io import write_json

MANIFEST_SCHEMA = {"key": pl.String, "split": pl.String, "label": pl.Int64, "classname": pl.String,
                   "path": pl.String, "sha256": pl.String, "shard": pl.String}
SKIPPED_SCHEMA = {"split": pl.String, "path": pl.String, "label": pl.Int64, "classname": pl.String,
                  "reason": pl.String}
SPLIT_ORDER = {"train": 0, "val": 1, "test": 2}


def sample_key(item: Item) -> str:
    """Stable key from split and path (no dots: webdataset splits member names at the first dot)."""
    return f"{item.split}_{hashlib.sha1(item.path.encode()).hexdigest()[:16]}"


def select_items(splits: dict[str, list[Item]], shots: int, seeds: list[int], test_only: bool,
                 val_from_train: bool = False):
    """Items to shard per split, and the keys of each seed's few-shot draw."""
    draws: dict[str, dict[str, list[str]]] = {}
    chosen: dict[str, dict[str, Item]] = {"train": {}, "val": {}, "test": {}}
    if not test_only:
        for seed in seeds:
            train = sample_few_shot(splits["train"], shots, seed)
            draw = {"train": train, "val": draw_val(splits, train, shots, seed, val_from_train)}
            draws[str(seed)] = {s: sorted(sample_key(it) for it in its) for s, its in draw.items()}
            for s, its in draw.items():
                chosen[s].update({sample_key(it): it for it in its})
    chosen["test"] = {sample_key(it): it for it in splits["test"]}
    ordered = {s: sorted(c.values(), key=lambda it: (it.label, it.path)) for s, c in chosen.items()}
    return ordered, draws


def draw_val(splits: dict[str, list[Item]], train_draw: list[Item], shots: int, seed: int,
             val_from_train: bool) -> list[Item]:
    """min(K, 4) per class from val; with `val_from_train`, from the train items outside this seed's train
    draw (relabelled split "val")."""
    if not val_from_train:
        return sample_few_shot(splits["val"], min(shots, 4), seed)
    taken = set(train_draw)
    rest = [it for it in splits["train"] if it not in taken]
    return [dataclasses.replace(it, split="val") for it in sample_few_shot(rest, min(shots, 4), seed)]


def short_of_shots(dataset: str, train: list[Item], shots: int) -> str | None:
    """The line to print when no class has `shots` train items. A short class gives all it has, as CoOp's
    few-shot sampler does (and tiny test roots rely on it); when every class is short, every seed's draw is the
    whole train split, and results labelled K-shot are not, so the stage says so."""
    most = max(collections.Counter(it.label for it in train).values(), default=0)
    if train and shots > most:
        return (f"shard {dataset}: note: data.shots={shots} but no class has more than {most} train images: "
                "every seed draws the whole train split")
    return None


def select_readable(splits: dict[str, list[Item]], shots: int, seeds: list[int], spec: DatasetSpec,
                    images: ImageFiles):
    """`select_items` over the items whose images read. Every drawn train/val image is read (once: ImageFiles
    remembers); a bad one stops the stage, or under skip leaves the candidates and all seeds are drawn again,
    until every drawn image reads. The draw is then exactly `select_items` on the split without the skipped
    entries: a class keeps its K shots while it has K readable items, the same seed gives the same shots as a
    clean copy of the data would, and skipped.csv says which candidates were removed. Test items are not drawn:
    bad ones are skipped while writing."""
    while True:
        listed = {s: [it for it in v if it.path not in images.skipped] for s, v in splits.items()}
        items, draws = select_items(listed, shots, seeds, spec.test_only, spec.val_from_train)
        if all([images.readable(it) for it in items["train"] + items["val"]]):  # a list: read every drawn item
            return items, draws


def write_shards(spec: DatasetSpec, root: str | Path, out_dir: Path, *, shots: int, seeds: list[int],
                 maxcount: int, bad_images: str = "error", log=None) -> pl.DataFrame:
    """Read the dataset, draw, and write tars + manifest + fewshot.json + classnames.json + skipped.csv into
    out_dir. `bad_images`: "error" or "skip" (module docstring). Progress lines go to `log` (default: stderr)."""
    log = log or _stderr
    splits = read_dataset(spec, root)
    log(f"shard {spec.id}: listed " + ", ".join(f"{s} {len(v)}" for s, v in splits.items()))
    if not spec.test_only and (note := short_of_shots(spec.id, splits["train"], shots)):
        log(note)
    names, problems = check_classes(spec, root, splits)
    images = ImageFiles(spec, spec.image_dir(root), skip=bad_images == "skip")
    try:  # class problems are reported with the first bad image, or after every image read
        items, draws = select_readable(splits, shots, seeds, spec, images)
        del splits  # the full listing is not needed while writing
        rows = []
        for split, split_items in items.items():
            rows += write_split(spec, out_dir, split, split_items, images, maxcount, log)
    except UserError as exc:
        raise UserError("; ".join([*problems, str(exc)])) from None
    if problems:
        raise UserError("; ".join(problems))
    manifest = pl.DataFrame(rows, schema=MANIFEST_SCHEMA)
    manifest.write_csv(out_dir / "manifest.csv")
    skipped = images.skipped_table()
    skipped.write_csv(out_dir / "skipped.csv")
    write_json(out_dir / "fewshot.json", {"shots": None if spec.test_only else shots, "seeds": draws})
    write_json(out_dir / "classnames.json", names)
    if skipped.height:
        log(skip_summary(spec.id, skipped))
    return manifest


def skip_summary(dataset: str, skipped: pl.DataFrame) -> str:
    """The one line a skip run prints, e.g. `shard x: skipped 2 bad images (train 1, test 1; …), listed in …`."""
    per_split = ", ".join(f"{s} {n}" for s, n in skipped.group_by("split", maintain_order=True).len().rows())
    plural = "s" if skipped.height != 1 else ""
    return (f"shard {dataset}: skipped {skipped.height} bad image{plural} ({per_split}; data.bad_images: skip), "
            f"listed in skipped.csv")


def check_classes(spec: DatasetSpec, root: str | Path, splits: dict[str, list[Item]]) -> tuple[list[str], list[str]]:
    """(class names by label, problems). Test items must exist and labels run 0..N-1 with one name each (else
    UserError now: nothing can be drawn). The problems, a class count other than the expected one and classes
    without test (or, unless test-only, train) items, are reported beside the bad images the shard run finds
    (write_shards), so one run shows everything wrong with the data."""
    if not splits["test"]:
        raise UserError(f"{spec.id}: no test items under {spec.dataset_dir(root)}")
    names = classnames(splits["train"] + splits["val"] + splits["test"], spec.id)
    count = class_count_problem(spec, len(names), where=f" under {spec.dataset_dir(root)}")
    problems = [f"{spec.id}: {count}; get it: {spec.hint}"] if count else []
    return names, problems + empty_classes(spec, splits, names)


def write_split(spec: DatasetSpec, out_dir: Path, split: str, items: list[Item], images: ImageFiles,
                maxcount: int, log) -> list[dict]:
    """One split's tars (images streamed one at a time); its manifest rows. Skipped images get no row."""
    if not items:
        return []
    rows = []
    every = max(1000, len(items) // 20)
    with wds.ShardWriter(str(out_dir / f"{split}-%06d.tar"), maxcount=maxcount, mtime=0, verbose=0) as sink:
        for i, it in enumerate(items, 1):
            data = images.read(it)
            if data is not None:
                key = sample_key(it)
                ext = Path(it.path).suffix.lower().lstrip(".") or "img"
                sink.write({"__key__": key, ext: data, "cls": it.label})
                rows.append({"key": key, "split": split, "label": it.label, "classname": it.classname,
                             "path": it.path, "sha256": hashlib.sha256(data).hexdigest(),
                             "shard": Path(sink.fname).name})
            if i % every == 0 or i == len(items):
                log(f"shard {spec.id}: {split} {i}/{len(items)}")
    return rows


class BadImage(Exception):
    """An image file that cannot be sharded; the message says why (missing, zero-byte, unreadable (...))."""


class ImageFiles:
    """The image files of one dataset. Each is fully decoded the first time it is read (a truncated file raises
    there, not in the features stage); a bad one is a UserError naming it, or with `skip` a row of `skipped`
    (path -> split, path, label, classname, reason) and None in place of its bytes."""

    def __init__(self, spec: DatasetSpec, image_dir: Path, skip: bool):
        self.spec, self.image_dir, self.skip = spec, image_dir, skip
        self.skipped: dict[str, dict] = {}
        self._decoded: set[str] = set()

    def read(self, item: Item) -> bytes | None:
        path = self.image_dir / item.path
        try:
            data = load_image(path, decode=item.path not in self._decoded)
        except BadImage as exc:
            if not self.skip:
                raise UserError(f"{self.spec.id}: {item.split} image is {exc}: {path}") from None
            self.skipped.setdefault(item.path, {"split": item.split, "path": item.path, "label": item.label,
                                                "classname": item.classname, "reason": str(exc)})
            return None
        self._decoded.add(item.path)
        return data

    def readable(self, item: Item) -> bool:
        return item.path in self._decoded or self.read(item) is not None

    def skipped_table(self) -> pl.DataFrame:
        rows = sorted(self.skipped.values(), key=lambda r: (SPLIT_ORDER[r["split"]], r["label"], r["path"]))
        return pl.DataFrame(rows, schema=SKIPPED_SCHEMA)


def load_image(path: Path, decode: bool = True) -> bytes:
    """The file's bytes; BadImage if it is missing, empty or (when `decode`) not a decodable image."""
    if not path.is_file():
        raise BadImage("missing")
    data = path.read_bytes()
    if not data:
        raise BadImage("zero-byte")
    if decode:
        try:
            decode_image(data)
        except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, ... for broken files
            raise BadImage(f"unreadable ({type(exc).__name__}: {stable_message(exc)})") from None
    return data


def stable_message(exc: Exception) -> str:
    """The exception's text without object reprs or memory addresses: PIL names the buffer it read as
    `<_io.BytesIO object at 0x7f…>`, which would change skipped.csv (a DVC output) on every run."""
    text = re.sub(r"\s*<[^<>]* at 0x[0-9a-fA-F]+>", "", str(exc))
    return re.sub(r"0x[0-9a-fA-F]{6,}", "0x…", text).strip()


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def read_manifest(shard_dir: str | Path) -> pl.DataFrame:
    return pl.read_csv(Path(shard_dir) / "manifest.csv", schema=MANIFEST_SCHEMA)


def read_skipped(shard_dir: str | Path) -> pl.DataFrame:
    return pl.read_csv(Path(shard_dir) / "skipped.csv", schema=SKIPPED_SCHEMA)


def split_shards(shard_dir: str | Path, split: str) -> list[str]:
    """The tar files of one split, sorted (the order the shard stage wrote them in)."""
    return sorted(str(p) for p in Path(shard_dir).glob(f"{split}-*.tar"))


def iter_shard(tar: str | Path):
    """Yield (key, image bytes, label) of one tar in order. No node or worker splitting here: the caller picks
    the shards (promptlab/clip/extract.py splits them between torchrun ranks)."""
    for sample in wds.WebDataset([str(tar)], shardshuffle=False, empty_check=False, nodesplitter=None,
                                 workersplitter=None):
        key = sample["__key__"]
        image_ext = next(k for k in sample if k not in ("__key__", "__url__", "__local_path__", "cls"))
        yield key, sample[image_ext], int(sample["cls"])


def iter_split(shard_dir: str | Path, split: str):
    """Yield (key, image bytes, label) for one split, in manifest order (shards are read in sequence)."""
    for tar in split_shards(shard_dir, split):
        yield from iter_shard(tar)


def decode_image(data: bytes):
    """Bytes -> RGB PIL image, fully decoded (a truncated file raises here, not later). Grayscale, palette,
    RGBA and CMYK are converted by PIL; 16/32-bit integer images are scaled to 8 bits first (PIL's own
    conversion would clip them to white)."""
    import numpy as np
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        im.load()
        if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
            arr = np.asarray(im, dtype=np.float64)
            top = 65535.0 if im.mode.startswith("I;16") or arr.max() > 255 else 255.0
            return Image.fromarray(np.round(arr.clip(0, top) * (255.0 / top)).astype(np.uint8), "L").convert("RGB")
        return im.convert("RGB")
