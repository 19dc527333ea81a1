"""Benchmark 3: shard -> feature extraction throughput vs the model's forward alone on the same batches.

ViT-B-16 (random weights, fp32, CPU), synthetic 224-px PNG test images in webdataset shards. Times:
- decode only: reading + decoding + preprocessing every batch (SplitBatches, in this process);
- model only: encode_images (global + projected patches, as the features stage) on those same batches, already
  in memory, once before and once after the extraction runs (the baseline is their mean);
- extract_split end to end with num_workers = 0 (decode in the main process) and each N in --workers
  (DataLoader worker processes decode ahead while the model runs).
Ratios are model-only time / extraction time (1.0 = decoding and I/O cost nothing); `ratio` is the best worker
count's. Also checks that every worker count gives byte-identical tensors and keys.

    uv run python benchmarks/extraction.py [--images 48] [--batch 16] [--workers 1 2]

On a GPU (results in extraction_cuda.json; issue 3's run: at least 20,000 images at 224 px):

    uv run python benchmarks/extraction.py --device cuda --precision bf16 --images 20000 --batch 256 --workers 4 8

There the model-only baseline runs on batches already on the GPU, under the same autocast as the pipeline, and
each timing ends with torch.cuda.synchronize().
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

import _common as C

from promptlab.clip.extract import AUTOCAST, SplitBatches, extract_split
from promptlab.clip.features import encode_images


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="ViT-B-16")
    ap.add_argument("--images", type=int, default=48)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--split", default="test", choices=["test", "train"],
                    help="test: 1 view, a decode per forward (the worst case); train: --views augmented views")
    ap.add_argument("--views", type=int, default=4)
    ap.add_argument("--device", default="cpu", help="cpu | cuda")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"],
                    help="autocast of the image tower (features.precision)")
    args = ap.parse_args()
    on_gpu = args.device != "cpu"
    result = C.Result("extraction" if not on_gpu else f"extraction_{args.device}")
    result["goal"] = (">= 85% of model-only throughput (ViT-B-16, CPU)" if not on_gpu else
                      ">= 80% of model-only throughput (ViT-B-16, GPU, 224 px)")
    torch.set_grad_enabled(False)
    clip = C.random_clip(args.model)
    clip.model.to(args.device)
    sync = torch.cuda.synchronize if on_gpu else (lambda: None)
    autocast = lambda: torch.autocast(torch.device(args.device).type, dtype=AUTOCAST[args.precision],  # noqa: E731
                                      enabled=AUTOCAST[args.precision] is not None)
    n_classes = 8
    samples, _ = C.synthetic_samples(n_classes, -(-args.images // n_classes), clip.image_size, split=args.split)
    samples = samples[:args.images]
    views = args.views if args.split == "train" else 1
    kw = dict(n_views=views, seed=0, batch_size=args.batch, patches=True, crop_scale_min=0.08)
    with tempfile.TemporaryDirectory() as tmp:
        C.write_shards(Path(tmp), args.split, samples, maxcount=max(1, args.images // 2))  # two shards
        dataset = SplitBatches(clip, tmp, args.split, views, 0, args.batch, 0.08)
        t0 = time.perf_counter()
        batches = [b[2].flatten(0, 1) for b in dataset]
        decode_s = time.perf_counter() - t0
        batches = [b.to(args.device) for b in batches]  # model-only: the images already where the model is
        with autocast():
            encode_images(clip.model, batches[0][:2])  # warm-up (allocator, kernel selection)

        def model_only() -> float:
            sync()
            t0 = time.perf_counter()
            with autocast():
                for images in batches:
                    encode_images(clip.model, images, patches=True)
            sync()
            return time.perf_counter() - t0

        # model-only before and after the extraction runs (their mean is the baseline), so that a load change
        # on a shared machine during the benchmark biases neither the first nor the last runs
        model_runs = [model_only()]
        runs, outputs = {}, {}
        for workers in [0, *args.workers]:
            sync()
            t0 = time.perf_counter()
            outputs[workers] = extract_split(clip, tmp, args.split, num_workers=workers, precision=args.precision,
                                             **kw)
            sync()
            runs[workers] = time.perf_counter() - t0
        model_runs.append(model_only())
        model_s = sum(model_runs) / len(model_runs)
    n_images = len(samples) * views
    reference, keys = outputs[0]
    identical = all(k == keys and all(t.numpy().tobytes() == reference[name].numpy().tobytes()
                                      for name, t in tensors.items())
                    for tensors, k in outputs.values())
    result["model"] = args.model
    result["device"] = torch.cuda.get_device_name() if on_gpu else "cpu"
    result["precision"] = args.precision
    result["split"] = args.split
    result["images"] = len(samples)
    result["views"] = views
    result["batch"] = args.batch
    result["batches"] = len(batches)
    result["decode_only_s"] = round(decode_s, 3)
    result["model_only_s"] = round(model_s, 3)
    result["model_only_runs_s"] = [round(t, 3) for t in model_runs]
    result["model_only_images_per_s"] = round(n_images / model_s, 3)
    result["extract"] = {str(w): {"s": round(s, 3), "images_per_s": round(n_images / s, 3),
                                  "ratio_to_model_only": round(model_s / s, 3)} for w, s in runs.items()}
    result["ratio_workers_0"] = round(model_s / runs[0], 3)
    result["ratio_workers_n"] = {str(w): round(model_s / runs[w], 3) for w in args.workers}
    best = max(runs, key=lambda w: model_s / runs[w])
    result["best_workers"] = best
    result["ratio"] = round(model_s / runs[best], 3)
    result["byte_identical_across_workers"] = identical
    result["goal_met"] = result["ratio"] >= (0.8 if on_gpu else 0.85) and identical
    result.write()


if __name__ == "__main__":
    main()
