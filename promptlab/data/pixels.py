"""The pixel path: batches of images for methods that train and score through the image tower
(`inputs = "pixels"`: vpt, ivlp, maple, promptsrc).

Training (PixelSource): the seed's recorded few-shot draw (fewshot.json, nothing re-sharded) is read once from
the dataset's train shards as encoded image bytes (only the draw is kept: 16 shots x C classes). Every epoch
visits the draw in the same seeded order as the feature path (promptlab.train.epoch_batches: same batches,
last incomplete one dropped) and decodes + augments each sample with CoOp's train augmentation (random resized
crop at the model's size, horizontal flip, the model's normalisation), seeded by (run seed, sample key, epoch)
alone: the batches are the same with any number of DataLoader workers, and a resumed run sees exactly the
views an uninterrupted one would.

Scoring (pixel_test_split): the test shards streamed in manifest order with the model's own test
preprocessing (resize, center crop, normalise), decoded ahead in `num_workers` processes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch
from torch.utils.data import DataLoader, Dataset

from promptlab.clip.extract import SplitBatches, split_batches
from promptlab.clip.features import train_transform, view_seed
from promptlab.clip.model import LoadedCLIP
from promptlab.data.shards import decode_image, iter_split
from promptlab.errors import UserError
from promptlab.evaluate import relabel
from promptlab.methods.base import Batch
from promptlab.train import epoch_batches


@dataclass(frozen=True)
class PixelOptions:
    """How pixels are prepared: the features stage's settings (params `features`), shared by both paths."""

    crop_scale_min: float = 0.08  # RandomResizedCrop's lower scale bound (CoOp: 0.08)
    num_workers: int = 0  # DataLoader processes decoding ahead of the towers (0: in this process)
    test_batch_size: int = 256


def read_draw(shard_dir: Path, keys: list[str]) -> list[tuple[str, bytes, int]]:
    """(key, image bytes, label) of `keys` from the train shards, in the order of `keys`."""
    wanted = set(keys)
    found = {key: (key, data, label) for key, data, label in iter_split(shard_dir, "train") if key in wanted}
    missing = [k for k in keys if k not in found]
    if missing:
        raise UserError(f"{shard_dir}: {len(missing)} few-shot samples are not in the train shards "
                        f"(first: {missing[0]}); rerun the shard stage")
    return [found[k] for k in keys]


class AugmentedDraw(Dataset):
    """Map-style: index -> (augmented pixels [3, H, W], label) for one epoch; picklable for workers."""

    def __init__(self, samples: list[tuple[str, bytes, int]], transform, seed: int, epoch: int):
        self.samples, self.transform, self.seed, self.epoch = samples, transform, seed, epoch

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        key, data, label = self.samples[i]
        with torch.random.fork_rng(devices=[]):  # torchvision draws from the global RNG: isolate it
            torch.manual_seed(view_seed(self.seed, key, self.epoch))
            return self.transform(decode_image(data)), label


def _collate(items: list[tuple[torch.Tensor, int]]) -> Batch:
    images = torch.stack([im for im, _ in items])  # [B, 3, H, W]
    return Batch(None, torch.tensor([label for _, label in items], dtype=torch.long), images=images)


class PixelSource:
    """Training batches of augmented pixels (module docstring): `epoch(e)` yields Batch(images=...)."""

    def __init__(self, clip: LoadedCLIP, shard_dir: Path, keys: list[str], labels: list[int], batch_size: int,
                 seed: int, options: PixelOptions = PixelOptions()):
        self.samples = [(k, data, label) for (k, data, _), label in zip(read_draw(shard_dir, keys), labels)]
        self.transform = train_transform(clip, options.crop_scale_min)
        self.batch_size, self.seed, self.num_workers = batch_size, seed, options.num_workers

    def epoch(self, epoch: int) -> Iterator[Batch]:
        # the feature path's order and batching
        order = [idx.tolist() for idx, _ in epoch_batches(len(self.samples), 1, self.batch_size, self.seed, epoch)]
        data = AugmentedDraw(self.samples, self.transform, self.seed, epoch)
        if self.num_workers <= 0:
            yield from (_collate([data[i] for i in idx]) for idx in order)
            return
        yield from DataLoader(data, batch_sampler=order, num_workers=self.num_workers, collate_fn=_collate)


def pixel_test_split(clip: LoadedCLIP, shard_dir: Path, keep: list[int] | None,
                       options: PixelOptions = PixelOptions()) -> Iterator[Batch]:
    """The test split as pixel batches with the model's test preprocessing, restricted to `keep` labels
    (relabelled to positions in `keep`), in manifest order."""
    split = SplitBatches(clip, shard_dir, "test", 1, 0, options.test_batch_size)
    for _, labels, views in split_batches(split, options.num_workers):
        labels, images = torch.tensor(labels, dtype=torch.long), views[:, 0]  # [b, 3, H, W]
        if keep is not None:
            mask, labels = relabel(labels, keep)
            images = images[mask]
        if len(labels):
            yield Batch(None, labels, images=images)
