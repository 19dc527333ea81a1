"""Benchmark 5: how feature extraction and training time grow with the number of images and of classes.

The project's tiny model (random weights; the default world's size, 32 px), synthetic images in shards, the
features stage's settings (train split, 4 augmented views, crop scale 0.5, batch 256, patches) and CoOp
(batch 32, ctx "a photo of a", one epoch after an untimed one). Two sweeps of three sizes each:
- images: 24 classes x 4 / 8 / 16 shots;
- classes: 12 / 24 / 48 classes x 16 shots (the image count grows with them).
Writes a table (benchmarks/results/scaling.json), the fitted exponent of time ~ size^k per sweep, and a plot
(benchmarks/results/scaling.png).

    uv run python benchmarks/scaling.py [--model promptlab-tiny] [--epochs 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import _common as C

from promptlab.clip.extract import extract_split
from promptlab.methods.base import FrozenCLIP, TrainData
from promptlab.methods.coop.method import CoOp
from promptlab.train import train

SWEEPS = {"images": [(24, 4), (24, 8), (24, 16)], "classes": [(12, 16), (24, 16), (48, 16)]}


def measure(clip, frozen, n_classes: int, shots: int, epochs: int, views: int) -> dict:
    samples, names = C.synthetic_samples(n_classes, shots, clip.image_size)
    classes = C.class_set_for(names)
    with tempfile.TemporaryDirectory() as tmp:
        C.write_shards(Path(tmp), "train", samples)
        t0 = time.perf_counter()
        tensors, _ = extract_split(clip, tmp, "train", n_views=views, seed=0, batch_size=256, patches=True,
                                   crop_scale_min=0.5)
        extract_s = time.perf_counter() - t0
    data = TrainData(tensors["global"], tensors["labels"])

    def method() -> CoOp:
        torch.manual_seed(1)
        return CoOp(CoOp.Config(), frozen, classes)

    train(method(), data, classes, C.coop_config(epochs=1), seed=1)  # warm-up
    t0 = time.perf_counter()
    train(method(), data, classes, C.coop_config(epochs=epochs), seed=1)
    epoch_s = (time.perf_counter() - t0) / epochs
    steps = len(samples) // 32
    return {"classes": n_classes, "shots": shots, "images": len(samples), "views": views,
            "extract_s": round(extract_s, 3), "extract_ms_per_image_view": round(1e3 * extract_s / (len(samples) * views), 3),
            "train_epoch_s": round(epoch_s, 4), "train_steps_per_epoch": steps,
            "train_ms_per_step": round(1e3 * epoch_s / steps, 2)}


def exponent(xs, ys) -> float:
    """Least-squares slope of log y on log x: time ~ size^k."""
    return round(float(np.polyfit(np.log(xs), np.log(ys), 1)[0]), 2)


def plot(table: dict, model: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, (sweep, rows) in zip(axes, table.items()):
        x = [r["images"] if sweep == "images" else r["classes"] for r in rows]
        ax.plot(x, [r["extract_s"] for r in rows], "o-", label="feature extraction (once)")
        ax.plot(x, [r["train_epoch_s"] for r in rows], "s-", label="CoOp training epoch (cached)")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(x, [str(v) for v in x])
        ax.set_xlabel("training images (24 classes)" if sweep == "images" else "classes (16 shots)")
        ax.set_ylabel("seconds")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Scaling on CPU ({model}, random weights, 4 views, batch 32)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="promptlab-tiny")
    ap.add_argument("--epochs", type=int, default=3, help="timed training epochs per size")
    ap.add_argument("--views", type=int, default=4)
    args = ap.parse_args()
    result = C.Result("scaling")
    result["goal"] = "report: growth of extraction and training time with images and classes"
    clip = C.random_clip(args.model)
    frozen = FrozenCLIP(clip)
    table = {}
    for sweep, sizes in SWEEPS.items():
        table[sweep] = [measure(clip, frozen, c, s, args.epochs, args.views) for c, s in sizes]
        print(sweep, table[sweep], flush=True)
    result["model"] = args.model
    result["table"] = table
    result["exponents"] = {
        "extract_vs_images": exponent([r["images"] for r in table["images"]], [r["extract_s"] for r in table["images"]]),
        "train_epoch_vs_images": exponent([r["images"] for r in table["images"]],
                                          [r["train_epoch_s"] for r in table["images"]]),
        "train_step_vs_classes": exponent([r["classes"] for r in table["classes"]],
                                          [r["train_ms_per_step"] for r in table["classes"]]),
        "train_epoch_vs_classes": exponent([r["classes"] for r in table["classes"]],
                                           [r["train_epoch_s"] for r in table["classes"]]),
    }
    png = C.RESULTS / "scaling.png"
    C.RESULTS.mkdir(parents=True, exist_ok=True)
    plot(table, args.model, png)
    result["plot"] = str(png.relative_to(C.REPO))
    result.write()


if __name__ == "__main__":
    main()
