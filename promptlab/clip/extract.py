"""Shards -> cached features for one dataset split (DESIGN.md §7).

Per split a safetensors file with
    global  [N, V, D] fp16   projected global embeddings (V = 1 test view, or V seeded augmented train views)
    patches [N, V, P, D] fp16 projected patch tokens (optional)
    labels  [N] int64
and the sample keys (manifest order) in its metadata."""

from __future__ import annotations

from pathlib import Path

import torch

from promptlab.clip.features import augmented_views, encode_images, train_transform
from promptlab.clip.model import LoadedCLIP
from promptlab.data.shards import decode_image, iter_split


def _view_batches(clip: LoadedCLIP, shard_dir: Path, split: str, n_views: int, seed: int, batch_size: int,
                  crop_scale_min: float):
    """Yield (keys, labels, views [b, V, 3, H, W]) batches in manifest order."""
    augment = train_transform(clip, crop_scale_min) if split == "train" else None
    keys, labels, views = [], [], []
    for key, data, label in iter_split(shard_dir, split):
        image = decode_image(data)
        v = augmented_views(image, key, n_views, augment, seed) if augment else clip.preprocess(image)[None]
        keys.append(key), labels.append(label), views.append(v)
        if len(keys) * v.shape[0] >= batch_size:
            yield keys, labels, torch.stack(views)
            keys, labels, views = [], [], []
    if keys:
        yield keys, labels, torch.stack(views)


@torch.no_grad()
def extract_split(clip: LoadedCLIP, shard_dir: str | Path, split: str, *, n_views: int, seed: int,
                  batch_size: int, patches: bool, crop_scale_min: float = 0.08
                  ) -> tuple[dict[str, torch.Tensor], list[str]]:
    device = next(clip.model.parameters()).device
    all_keys, all_labels, glob, pat = [], [], [], []
    for keys, labels, views in _view_batches(clip, Path(shard_dir), split, n_views, seed, batch_size,
                                                crop_scale_min):
        b, v = views.shape[:2]
        g, p = encode_images(clip.model, views.flatten(0, 1).to(device), patches)
        glob.append(g.view(b, v, -1).half().cpu())
        if p is not None:
            pat.append(p.view(b, v, *p.shape[1:]).half().cpu())
        all_keys += keys
        all_labels += labels
    if not all_keys:
        return {}, []
    tensors = {"global": torch.cat(glob), "labels": torch.tensor(all_labels, dtype=torch.long)}
    if pat:
        tensors["patches"] = torch.cat(pat)
    return tensors, all_keys
