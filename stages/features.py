"""Stage `features@<dataset>`: encode every sharded image once (V augmented views for train) with the frozen
image tower; writes projected global + patch features per split (fp16 safetensors)."""

import argparse
from pathlib import Path

import torch

from promptlab.cli import run
from promptlab.clip.extract import extract_split
from promptlab.clip.model import load_clip
from promptlab.config import load_params
from promptlab.data.shards import read_manifest
from promptlab.errors import UserError
from promptlab.io import atomic_dir, save_tensors


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--shards", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    p = load_params()
    torch.set_grad_enabled(False)
    clip = load_clip(p.model.name, p.model.pretrained, p.model.device)
    manifest = read_manifest(args.shards)
    with atomic_dir(args.out) as tmp:
        for split in ("train", "val", "test"):
            expected = manifest.filter(manifest["split"] == split)["key"].to_list()
            if not expected:
                continue
            n_views = p.features.train_views if split == "train" else 1
            tensors, keys = extract_split(clip, args.shards, split, n_views=n_views, seed=p.features.seed,
                                          crop_scale_min=p.features.crop_scale_min,
                                          batch_size=p.features.batch_size, patches=p.features.patches)
            if keys != expected:
                raise UserError(f"{args.shards}: {split} shards disagree with manifest.csv (rerun the shard stage)")
            save_tensors(Path(tmp) / f"{split}.safetensors", tensors,
                         {"keys": keys, "model": p.model.name, "pretrained": p.model.pretrained})
            print(f"features {split}: {tuple(tensors['global'].shape)}")


if __name__ == "__main__":
    run(main)
