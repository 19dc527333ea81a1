"""Shards -> cached features for one dataset split (format: docs/architecture.md "Features").

Per split a safetensors file with
    global  [N, V, D] fp16   projected global embeddings (V = 1 test view, or V seeded augmented train views)
    patches [N, V, P, D] fp16 projected patch tokens (optional)
    labels  [N] int64
and the sample keys (manifest order) in its metadata.

Batches never cross a shard: shard s's samples are cut into batches of k = ceil(batch_size / V) from its
first sample, so a batch's images (and the floating-point result of the forward on them) do not depend on
which process reads that shard. Every augmented view is seeded by (seed, key, view) alone.

Two ways to spread the work, each byte-identical to one process decoding everything:
- DataLoader workers (`num_workers`) decode and augment ahead of the image tower: batch b goes to worker
  b mod W and the DataLoader hands batches back round-robin, i.e. in manifest order. Each worker reads its
  process's tar stream in full and skips other workers' samples undecoded (reading is cheap next to decoding).
- torchrun ranks (`features.nproc`, promptlab/clip/parallel.py): each rank encodes a disjoint, sorted subset of
  the split's shards, webdataset's split_by_node (shards r, r+N, r+2N, ... of the sorted list, no shuffling),
  and one merge puts the rows back in manifest order."""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
import webdataset as wds
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from promptlab.clip.features import augmented_views, encode_images, train_transform
from promptlab.clip.model import LoadedCLIP
from promptlab.data.shards import decode_image, iter_shard, split_shards


def rank_shards(shard_dir: str | Path, split: str) -> list[str]:
    """The split's shards this process encodes: all of them, or under torchrun (RANK, WORLD_SIZE) webdataset's
    split_by_node share of the sorted list, disjoint from every other rank's."""
    return list(wds.split_by_node(split_shards(shard_dir, split)))


class SplitBatches(IterableDataset):
    """(keys, labels, views [b, V, 3, H, W]) batches of one split's `shards` (default: all) in manifest order,
    cut per shard. Holds transforms and paths only (never the model), so it pickles for spawned workers."""

    def __init__(self, clip: LoadedCLIP, shard_dir: str | Path, split: str, n_views: int, seed: int,
                 batch_size: int, crop_scale_min: float = 0.08, shards: list[str] | None = None):
        self.augment = train_transform(clip, crop_scale_min) if split == "train" else None
        self.preprocess = clip.preprocess
        self.shards = split_shards(shard_dir, split) if shards is None else shards
        self.n_views, self.seed = n_views, seed
        views = n_views if self.augment else 1
        self.per_batch = max(1, math.ceil(batch_size / views))  # samples per batch: b·V >= batch_size

    def _views(self, key: str, data: bytes) -> torch.Tensor:
        image = decode_image(data)
        if self.augment:
            return augmented_views(image, key, self.n_views, self.augment, self.seed)
        return self.preprocess(image)[None]

    def __iter__(self):
        info = get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        first = 0  # index of the current shard's first batch among all of this process's batches
        for tar in self.shards:
            keys, labels, views, n = [], [], [], 0
            for n, (key, data, label) in enumerate(iter_shard(tar), start=1):
                if (first + (n - 1) // self.per_batch) % n_workers != worker:
                    continue  # another worker's batch: skipped undecoded
                keys.append(key), labels.append(label), views.append(self._views(key, data))
                if len(keys) == self.per_batch:
                    yield keys, labels, torch.stack(views)
                    keys, labels, views = [], [], []
            if keys:
                yield keys, labels, torch.stack(views)  # the shard's last, short batch
            first += math.ceil(n / self.per_batch)


def split_batches(dataset: SplitBatches, num_workers: int = 0):
    """Iterate a SplitBatches in order, in this process (0) or decoded ahead by `num_workers` processes."""
    if num_workers <= 0:
        return iter(dataset)
    # batch_size=None: the dataset yields whole batches. prefetch_factor 2 per worker (the default) keeps
    # 2·W batches decoded ahead of the model.
    return iter(DataLoader(dataset, batch_size=None, num_workers=num_workers, prefetch_factor=2))


AUTOCAST = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class Progress:
    """One line per ~10% of a split (and at the end): images done, of how many, images/s. Lines, not a bar:
    DVC captures a stage's output, where a redrawn bar becomes hundreds of lines."""

    def __init__(self, name: str, total: int | None, log, every: float = 0.1):
        self.name, self.total, self.log = name, total, log
        self.step = max(1, int((total or 0) * every))
        self.done, self.next, self.start = 0, self.step, time.perf_counter()

    def update(self, n: int) -> None:
        self.done += n
        if self.done >= self.next or self.done == self.total:
            rate = self.done / max(time.perf_counter() - self.start, 1e-9)
            of = f"/{self.total}" if self.total else ""
            self.log(f"{self.name}: {self.done}{of} images, {rate:.1f} images/s")
            self.next = (self.done // self.step + 1) * self.step


@torch.no_grad()
def extract_split(clip: LoadedCLIP, shard_dir: str | Path, split: str, *, n_views: int, seed: int,
                  batch_size: int, patches: bool, crop_scale_min: float = 0.08, num_workers: int = 0,
                  precision: str = "fp32", total: int | None = None, log=None, shards: list[str] | None = None
                  ) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Encode one split. num_workers > 0 decodes and augments in that many DataLoader worker processes
    (byte-identical results, same order); 0 decodes in this process. precision "bf16" / "fp16" runs the image
    tower under autocast (matmuls accumulate in fp32; the outputs are cast to fp32, then stored fp16 like the
    fp32 path's); "fp32" runs it in float32, the CPU default. `log` gets a progress line per ~10% of `total`
    images. `shards` limits it to those tar files (a torchrun rank's share, `rank_shards`)."""
    device = next(clip.model.parameters()).device
    dataset = SplitBatches(clip, shard_dir, split, n_views, seed, batch_size, crop_scale_min, shards)
    progress = Progress(f"{Path(shard_dir).name}/{split}", total, log) if log else None
    all_keys, all_labels, glob, pat = [], [], [], []
    for keys, labels, views in split_batches(dataset, num_workers):
        b, v = views.shape[:2]
        with torch.autocast(device.type, dtype=AUTOCAST[precision], enabled=AUTOCAST[precision] is not None):
            g, p = encode_images(clip.model, views.flatten(0, 1).to(device), patches)
        glob.append(g.float().view(b, v, -1).half().cpu())
        if p is not None:
            pat.append(p.float().view(b, v, *p.shape[1:]).half().cpu())
        all_keys += keys
        all_labels += labels
        if progress:
            progress.update(b)
    if not all_keys:
        return {}, []
    tensors = {"global": torch.cat(glob), "labels": torch.tensor(all_labels, dtype=torch.long)}
    if pat:
        tensors["patches"] = torch.cat(pat)
    return tensors, all_keys
