"""GPU feature extraction through the real stage code (one prepared run, under 8 minutes on one GPU).

ViT-B/16 with random weights (nothing downloaded), >= 20,000 synthetic 224-px test images in webdataset shards
with a manifest, as the shard stage writes them. It measures:
1. model only: encode_images on the decoded batches already on the GPU (before and after the runs below; their
   mean is the baseline), fp32 and bf16;
2. extraction: extract_split (what stages/features.py calls) end to end with features.num_workers decoding
   processes, images/s and its ratio to model only (goal >= 0.8), fp32 and bf16;
3. bf16 vs fp32 agreement of the stored features (cosine of global features, patch error relative to the
   largest patch value);
4. the stage itself, stages/features.py on a params.yaml, with features.nproc 1 and 2 (torchrun, two ranks on
   the one GPU): wall time and whether the two outputs are byte-identical.

    uv run python benchmarks/gpu_extraction.py                 # the GPU run -> results/gpu_extraction.json
    uv run python benchmarks/gpu_extraction.py --tiny          # CPU smoke test of every step (a minute)

--tiny: promptlab-tiny (32 px) on CPU, 96 images; writes results/gpu_extraction_tiny.json.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
import torch
import yaml

import _common as C

from promptlab.clip.extract import AUTOCAST, SplitBatches, extract_split
from promptlab.clip.features import encode_images
from promptlab.data.shards import MANIFEST_SCHEMA
from promptlab.io import write_json


def write_dataset(out: Path, n: int, size: int, maxcount: int) -> None:
    """n test images in shards of `maxcount` + manifest.csv + classnames.json (the features stage's inputs).
    512 distinct renders are repeated under distinct keys: every sample is still decoded, and rendering 20,000
    images would take longer than encoding them."""
    pool, names = C.synthetic_samples(8, 64, size, split="test")
    samples = [(f"test_{i:06d}", pool[i % len(pool)][1], pool[i % len(pool)][2]) for i in range(n)]
    C.write_shards(out, "test", samples, maxcount=maxcount)
    rows = [{"key": k, "split": "test", "label": label, "classname": names[label], "path": f"{k}.png",
             "sha256": "-", "shard": f"test-{i // maxcount:06d}.tar"} for i, (k, _, label) in enumerate(samples)]
    pl.DataFrame(rows, schema=MANIFEST_SCHEMA).write_csv(out / "manifest.csv")
    write_json(out / "classnames.json", names)


def timed(fn, sync) -> tuple[float, object]:
    sync()
    t0 = time.perf_counter()
    out = fn()
    sync()
    return time.perf_counter() - t0, out


def model_only(clip, batches, precision: str, device: str, sync) -> float:
    """Seconds for the image tower alone over `batches` (already on the device), under the stage's autocast."""
    dtype = AUTOCAST[precision]

    def run():
        with torch.autocast(torch.device(device).type, dtype=dtype, enabled=dtype is not None):
            for images in batches:
                encode_images(clip.model, images, patches=True)

    return timed(run, sync)[0]


def agreement(low: dict, ref: dict) -> dict:
    cos = torch.nn.functional.cosine_similarity(low["global"].float(), ref["global"].float(), dim=-1)
    patch_err = (low["patches"].float() - ref["patches"].float()).abs().max() / ref["patches"].float().abs().max()
    return {"global_cosine_min": round(cos.min().item(), 5), "global_cosine_mean": round(cos.mean().item(), 6),
            "patches_max_abs_err_rel": round(patch_err.item(), 5)}


def stage_run(work: Path, params: dict, nproc: int, out: str) -> dict:
    """stages/features.py as DVC runs it, from a params.yaml in `work`; wall time and output bytes."""
    (work / "params.yaml").write_text(yaml.safe_dump({**params, "features": {**params["features"], "nproc": nproc}}))
    cmd = [sys.executable, str(C.REPO / "stages/features.py"), "--shards", "shards", "--out", f"{out}/features",
           "--report", f"{out}/report.json"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(C.REPO)})
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"features stage (nproc {nproc}) failed:\n{proc.stderr[-3000:]}")
    files = {p.name: p.read_bytes() for p in sorted((work / out / "features").iterdir())}
    return {"wall_s": round(wall, 2), "files": files}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="CPU smoke test: promptlab-tiny, 96 images")
    ap.add_argument("--images", type=int, default=20480)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--workers", type=int, default=8, help="features.num_workers")
    args = ap.parse_args()
    name, device, n, batch, workers, maxcount = ("ViT-B-16", "cuda", args.images, args.batch, args.workers, 1024)
    if args.tiny:
        name, device, n, batch, workers, maxcount = "promptlab-tiny", "cpu", 96, 16, 2, 24
    elif not torch.cuda.is_available():
        raise SystemExit("no GPU here: run with --tiny for the CPU smoke test")
    result = C.Result("gpu_extraction_tiny" if args.tiny else "gpu_extraction")
    result["goal"] = "extraction >= 80% of model-only images/s (ViT-B-16, 224 px, >= 20,000 images)"
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    torch.set_grad_enabled(False)
    clip = C.random_clip(name)
    clip.model.to(device)
    kw = dict(n_views=1, seed=0, batch_size=batch, patches=True, num_workers=workers)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        t_data, _ = timed(lambda: write_dataset(work / "shards", n, clip.image_size, maxcount), lambda: None)
        batches = [b[2].flatten(0, 1).to(device) for b in SplitBatches(clip, work / "shards", "test", 1, 0, batch)]
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16):
            encode_images(clip.model, batches[0][:2])  # warm-up: allocator, kernel selection
        runs = {}
        for precision in ("fp32", "bf16"):
            before = model_only(clip, batches, precision, device, sync)
            seconds, (tensors, keys) = timed(lambda: extract_split(clip, work / "shards", "test", precision=precision,
                                                                   **kw), sync)
            after = model_only(clip, batches, precision, device, sync)
            base = (before + after) / 2
            runs[precision] = {"model_only_s": round(base, 3), "model_only_images_per_s": round(n / base, 1),
                               "extract_s": round(seconds, 3), "extract_images_per_s": round(n / seconds, 1),
                               "ratio_to_model_only": round(base / seconds, 3), "tensors": tensors}
            assert len(keys) == n
        del batches
        result["agreement_bf16_vs_fp32"] = agreement(runs["bf16"].pop("tensors"), runs["fp32"].pop("tensors"))
        params = {"model": {"name": name, "pretrained": None, "device": device},
                  "features": {"batch_size": batch, "num_workers": workers, "precision": "bf16", "patches": True}}
        one = stage_run(work, params, 1, "one")
        two = stage_run(work, params, 2, "two")
    result["model"] = name
    result["device"] = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    result["images"], result["image_px"], result["batch"], result["num_workers"] = n, clip.image_size, batch, workers
    result["write_shards_s"] = round(t_data, 1)
    result["in_process"] = runs
    result["stage"] = {"nproc_1_wall_s": one["wall_s"], "nproc_2_wall_s": two["wall_s"],
                       "nproc_2_byte_identical": one["files"] == two["files"], "files": sorted(one["files"])}
    result["goal_met"] = runs["bf16"]["ratio_to_model_only"] >= 0.8 and not args.tiny
    result.write()


if __name__ == "__main__":
    main()
