"""Benchmark 1: CoOp training from cached features vs the classic per-step pipeline (BENCHMARKS.md).

Same method (CoOp, ctx "a photo of a"), same model (random weights), same data (16 shots x a few classes of
synthetic images rendered at the model's input size, PNG), same batch order and batch size (32):
- classic (benchmarks/reference.py ClassicCoOp): every step decodes the batch, applies CoOp's augmentation,
  runs the frozen image tower, then the text encoder forward + backward and the SGD step;
- cached: promptlab's extract_split once (V augmented views), then promptlab.train.train over the cache.
Reports seconds per training image per epoch for both and their ratio, the one-off cache cost and the number of
epochs after which the cache has paid for itself, and the logits of both paths for the same preprocessed
images (the seeded views the cache was built from) with their largest difference.

    uv run python benchmarks/cached_training.py [--models promptlab-tiny ViT-B-16] [--classes 4] [--shots 16]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

import _common as C
from reference import ClassicCoOp

from promptlab.clip.extract import extract_split
from promptlab.clip.features import augmented_views, encode_images, train_transform
from promptlab.data.shards import decode_image
from promptlab.methods.base import FrozenCLIP, TrainData
from promptlab.methods.coop.method import CoOp
from promptlab.train import epoch_batches, make_batch, train

CROP = 0.08  # CoOp's random-resized-crop scale
SEED = 0


def bench_model(name: str, n_classes: int, shots: int, views: int, cached_epochs: int, check_images: int,
                classic_steps: int | None) -> dict:
    clip = C.random_clip(name)
    size = clip.image_size
    samples, names = C.synthetic_samples(n_classes, shots, size)
    classes = C.class_set_for(names)
    frozen = FrozenCLIP(clip)
    cfg = C.coop_config(epochs=cached_epochs)
    out: dict = {"model": name, "image_size": size, "classes": n_classes, "shots": shots,
                 "images": len(samples), "batch_size": cfg.batch_size, "views": views}

    with tempfile.TemporaryDirectory() as tmp:
        C.write_shards(Path(tmp), "train", samples)
        t0 = time.perf_counter()
        tensors, keys = extract_split(clip, tmp, "train", n_views=views, seed=SEED, batch_size=32, patches=False,
                                      crop_scale_min=CROP)
        build_s = time.perf_counter() - t0
    assert keys == [k for k, _, _ in samples]
    data = TrainData(tensors["global"], tensors["labels"])

    # cached: promptlab's own loop; one untimed epoch first (allocator, kernel selection), then `cached_epochs`
    def new_method() -> CoOp:
        torch.manual_seed(1)
        return CoOp(CoOp.Config(), frozen, classes)

    train(new_method(), data, classes, C.coop_config(epochs=1), seed=1)
    method = new_method()
    t0 = time.perf_counter()
    train(method, data, classes, cfg, seed=1)
    cached_epoch = (time.perf_counter() - t0) / cached_epochs
    steps_per_epoch = len(samples) // cfg.batch_size if len(samples) >= cfg.batch_size else 1
    images_per_epoch = steps_per_epoch * cfg.batch_size if len(samples) >= cfg.batch_size else len(samples)

    # classic: one untimed warm-up step (8 images), then one epoch (or its first classic_steps steps)
    classic = ClassicCoOp(clip, new_method(), classes, cfg, CROP)
    classic.step(samples[:8])
    t0 = time.perf_counter()
    steps = classic.epoch(samples, epoch=0, seed=1, max_steps=classic_steps)
    classic_wall = time.perf_counter() - t0
    timed_images = sum(min(cfg.batch_size, len(samples)) for _ in steps)
    classic_per_image = classic_wall / timed_images
    cached_per_image = cached_epoch / images_per_epoch
    parts = {k: sum(s[k] for s in steps) / classic_wall for k in ("data_s", "image_tower_s", "prompt_s")}

    out["cache_build_s"] = round(build_s, 3)
    out["cache_build_s_per_image_view"] = round(build_s / (len(samples) * views), 4)
    out["cached"] = {"epochs_timed": cached_epochs, "steps_per_epoch": steps_per_epoch,
                     "epoch_s": round(cached_epoch, 4), "s_per_image": round(cached_per_image, 6)}
    out["classic"] = {"steps_timed": len(steps), "images_timed": timed_images,
                      "epoch_s": round(classic_per_image * images_per_epoch, 3),
                      "s_per_image": round(classic_per_image, 5),
                      "share": {"decode_augment": round(parts["data_s"], 3),
                                "image_tower": round(parts["image_tower_s"], 3),
                                "text_encoder_backward_step": round(parts["prompt_s"], 3)}}
    out["speedup_per_epoch"] = round(classic_per_image / cached_per_image, 1)
    saved = classic_per_image * images_per_epoch - cached_epoch
    out["break_even_epochs"] = round(build_s / saved, 2) if saved > 0 else None

    # equality: the same preprocessed images (seeded view of each sample the cache holds) through both paths
    idx, view = next(epoch_batches(len(samples), views, check_images, seed=1, epoch=0))
    augment = train_transform(clip, CROP)
    images = torch.stack([augmented_views(decode_image(samples[i][1]), samples[i][0], views, augment, SEED)[v]
                          for i, v in zip(idx.tolist(), view.tolist())])
    expected = classic.logits(images)
    with torch.no_grad():
        got = classic.method.logits(make_batch(data, idx, view, False), classes)
        fp32 = TrainData(encode_images(clip.model, images, patches=False)[0][:, None], data.labels[idx])
        got32 = classic.method.logits(make_batch(fp32, torch.arange(len(idx)), torch.zeros_like(idx), False),
                                      classes)
    tol = frozen.logit_scale * 1e-3
    out["logits_check"] = {
        "images": len(idx), "classes": n_classes, "logit_scale": round(frozen.logit_scale, 3),
        "max_abs_diff_fp16_cache": float((got - expected).abs().max()),
        "max_abs_diff_fp32_features": float((got32 - expected).abs().max()),
        "max_abs_logit": float(expected.abs().max()),
        "tolerance_fp16": tol, "tolerance_fp32": 1e-4,
        "equal": bool((got - expected).abs().max() <= tol and (got32 - expected).abs().max() <= 1e-4),
    }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["promptlab-tiny", "ViT-B-16"])
    ap.add_argument("--classes", type=int, default=4)
    ap.add_argument("--shots", type=int, default=16)
    ap.add_argument("--views", type=int, default=1, help="augmented views cached per image (epoch time does "
                                                         "not depend on it; the cache build scales with it)")
    ap.add_argument("--classic-steps", type=int, default=None, help="time only this many classic steps")
    args = ap.parse_args()
    result = C.Result("cached_training")
    result["goal"] = ">= 20x faster per epoch on ViT-B-16 on CPU"
    result["method"] = "coop (ctx 'a photo of a', batch 32, SGD)"
    runs = []
    for name in args.models:
        big = name != "promptlab-tiny"
        runs.append(bench_model(name, args.classes, args.shots, args.views, cached_epochs=5 if big else 20,
                                check_images=8 if big else 32, classic_steps=args.classic_steps))
        print(f"{name}: {runs[-1]['speedup_per_epoch']}x", flush=True)
    result["runs"] = runs
    vit = next((r for r in runs if r["model"] == "ViT-B-16"), None)
    if vit:
        result["ratio"] = vit["speedup_per_epoch"]
        result["goal_met"] = vit["speedup_per_epoch"] >= 20 and vit["logits_check"]["equal"]
    result.write()


if __name__ == "__main__":
    main()
