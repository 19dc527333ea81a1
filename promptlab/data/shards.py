"""Writing and reading a dataset's WebDataset shards and manifest.

Layout of one sharded dataset (out_dir):
    {split}-000000.tar ...   members per sample: <key>.<image ext> (the original bytes), <key>.cls (label)
    manifest.csv             key, split, label, classname, path, sha256, shard  (one row per sample, in shard order)
    fewshot.json             the drawn few-shot items per seed (keys), so a run's exact shots are versioned
    classnames.json          class names indexed by label
Only what some run can use is sharded: the union of the few-shot draws over seeds for train (K per class)
and val (min(K, 4) per class), and the whole test split.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import polars as pl
import webdataset as wds

from promptlab.data.coop_format import Item, classnames, read_split, sample_few_shot
from promptlab.data.registry import DatasetSpec
from promptlab.errors import UserError
from promptlab.io import write_json

MANIFEST_SCHEMA = {"key": pl.String, "split": pl.String, "label": pl.Int64, "classname": pl.String,
                   "path": pl.String, "sha256": pl.String, "shard": pl.String}


def sample_key(item: Item) -> str:
    """Stable key from split and path (no dots: webdataset splits member names at the first dot)."""
    return f"{item.split}_{hashlib.sha1(item.path.encode()).hexdigest()[:16]}"


def select_items(splits: dict[str, list[Item]], shots: int, seeds: list[int], test_only: bool):
    """Items to shard per split, and the keys of each seed's few-shot draw."""
    draws: dict[str, dict[str, list[str]]] = {}
    chosen: dict[str, dict[str, Item]] = {"train": {}, "val": {}, "test": {}}
    if not test_only:
        for seed in seeds:
            draw = {"train": sample_few_shot(splits["train"], shots, seed),
                    "val": sample_few_shot(splits["val"], min(shots, 4), seed)}
            draws[str(seed)] = {s: sorted(sample_key(it) for it in its) for s, its in draw.items()}
            for s, its in draw.items():
                chosen[s].update({sample_key(it): it for it in its})
    chosen["test"] = {sample_key(it): it for it in splits["test"]}
    ordered = {s: sorted(c.values(), key=lambda it: (it.label, it.path)) for s, c in chosen.items()}
    return ordered, draws


def write_shards(spec: DatasetSpec, root: str | Path, out_dir: Path, *, shots: int, seeds: list[int],
                 maxcount: int) -> pl.DataFrame:
    splits = read_split(spec, root)
    if not splits["test"]:
        raise UserError(f"{spec.id}: split file has no test items: {spec.split_file(root)}")
    names = classnames(splits["train"] + splits["val"] + splits["test"])
    items, draws = select_items(splits, shots, seeds, spec.test_only)
    image_dir = spec.image_dir(root)
    rows = []
    for split, split_items in items.items():
        if not split_items:
            continue
        with wds.ShardWriter(str(out_dir / f"{split}-%06d.tar"), maxcount=maxcount, mtime=0, verbose=0) as sink:
            for it in split_items:
                data = _read_image_bytes(spec, image_dir, it)
                key = sample_key(it)
                ext = Path(it.path).suffix.lower().lstrip(".") or "img"
                sink.write({"__key__": key, ext: data, "cls": it.label})
                rows.append({"key": key, "split": split, "label": it.label, "classname": it.classname,
                             "path": it.path, "sha256": hashlib.sha256(data).hexdigest(),
                             "shard": Path(sink.fname).name})
    manifest = pl.DataFrame(rows, schema=MANIFEST_SCHEMA)
    manifest.write_csv(out_dir / "manifest.csv")
    write_json(out_dir / "fewshot.json", {"shots": None if spec.test_only else shots, "seeds": draws})
    write_json(out_dir / "classnames.json", names)
    return manifest


def _read_image_bytes(spec: DatasetSpec, image_dir: Path, item: Item) -> bytes:
    path = image_dir / item.path
    if not path.is_file():
        raise UserError(f"{spec.id}: image missing: {path}")
    data = path.read_bytes()
    if not data:
        raise UserError(f"{spec.id}: zero-byte image: {path}")
    return data


def read_manifest(shard_dir: str | Path) -> pl.DataFrame:
    return pl.read_csv(Path(shard_dir) / "manifest.csv", schema=MANIFEST_SCHEMA)


def iter_split(shard_dir: str | Path, split: str):
    """Yield (key, image bytes, label) for one split, in manifest order (shards are read in sequence)."""
    shard_dir = Path(shard_dir)
    tars = sorted(str(p) for p in shard_dir.glob(f"{split}-*.tar"))
    if not tars:
        return
    for sample in wds.WebDataset(tars, shardshuffle=False, empty_check=False):
        key = sample["__key__"]
        image_ext = next(k for k in sample if k not in ("__key__", "__url__", "__local_path__", "cls"))
        yield key, sample[image_ext], int(sample["cls"])


def decode_image(data: bytes):
    """Bytes -> RGB PIL image (grayscale/RGBA/CMYK converted)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return im.convert("RGB")
