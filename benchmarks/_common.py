"""Shared helpers of the benchmark scripts: machine facts, random-weight models, synthetic shards, timing,
result files. Not a library: the scripts import it as a sibling module (`python benchmarks/<name>.py`)."""

from __future__ import annotations

import io
import json
import logging
import os
import platform
import subprocess
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"

# open_clip logs a warning for every model built without weights; these models are random on purpose.
logging.getLogger().setLevel(logging.ERROR)


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine() -> dict:
    import open_clip

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    mem = next((int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                if line.startswith("MemTotal")), 0) if Path("/proc/meminfo").exists() else 0
    return {"cpus": os.cpu_count(), "cpu": cpu, "mem_gib": round(mem / 2**20, 1), "platform": platform.platform(),
            "python": platform.python_version(), "torch": torch.__version__, "open_clip": open_clip.__version__,
            "torch_threads": torch.get_num_threads(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(default)"),
            "device": "cpu", "dtype": "float32"}


def commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True).stdout
    return out.stdout.strip() + ("+dirty" if dirty.strip() else "")


class Result:
    """Collects one benchmark's numbers; `write` adds machine facts and the load average at start and end."""

    def __init__(self, name: str):
        self.name = name
        self.data: dict = {"benchmark": name, "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
                           "load_average_start": load_average()}
        self._t0 = time.perf_counter()

    def __setitem__(self, key, value):
        self.data[key] = value

    def __getitem__(self, key):
        return self.data[key]

    def write(self) -> Path:
        self.data["load_average_end"] = load_average()
        self.data["benchmark_wall_s"] = round(time.perf_counter() - self._t0, 1)
        self.data["machine"] = machine()
        self.data["commit"] = commit()
        RESULTS.mkdir(parents=True, exist_ok=True)
        path = RESULTS / f"{self.name}.json"
        path.write_text(json.dumps(self.data, indent=2) + "\n")
        print(json.dumps(self.data, indent=2))
        return path


def random_clip(name: str, seed: int = 0):
    """open_clip `name` with random weights (pretrained=None: nothing is downloaded), frozen, eval mode, with
    its own preprocess and tokenizer, as promptlab's LoadedCLIP."""
    import open_clip

    from promptlab.clip.model import LoadedCLIP

    torch.manual_seed(seed)
    model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=None)
    model.eval().requires_grad_(False)
    return LoadedCLIP(model, preprocess, open_clip.get_tokenizer(name), name)


def synthetic_samples(n_classes: int, per_class: int, size: int, split: str = "train", seed: int = 0):
    """[(key, PNG bytes, label)] of the synthetic world's first n_classes classes, rendered at `size` px,
    class-major (the shard stage's order)."""
    from promptlab.data.synthetic import render, world_classes

    classes = world_classes()[:n_classes]
    out = []
    for cls in classes:
        for i in range(per_class):
            buf = io.BytesIO()
            render(cls, "photo", np.random.default_rng([seed, cls.label, i]), size).save(buf, format="PNG")
            out.append((f"{split}_{cls.label:03d}_{i:05d}", buf.getvalue(), cls.label))
    return out, [c.name for c in classes]


def write_shards(out: Path, split: str, samples, maxcount: int = 2000) -> None:
    """Samples as webdataset shards {split}-%06d.tar, the shard stage's member layout (<key>.png, <key>.cls)."""
    import webdataset as wds

    out.mkdir(parents=True, exist_ok=True)
    with wds.ShardWriter(str(out / f"{split}-%06d.tar"), maxcount=maxcount, mtime=0, verbose=0) as sink:
        for key, data, label in samples:
            sink.write({"__key__": key, "png": data, "cls": label})


def class_set_for(names: list[str]):
    """A ClassSet carrying only names (CoOp-style methods need nothing else to train)."""
    from promptlab.prompts.bank import ClassSet

    return ClassSet(list(names), "a photo of a {}.", torch.zeros(len(names), 1))


def coop_config(**overrides):
    from promptlab.methods.coop.method import CoOp

    return CoOp.Config(**{"epochs": 1, "batch_size": 32, "warmup_epochs": 0, **overrides})


def median(times: list[float]) -> float:
    """Median of repeated timings (robust to a neighbour's burst on a shared machine)."""
    return float(np.median(times))


def rss_mib() -> float:
    """Current resident set size of this process (MiB), from /proc/self/statm."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (ru_maxrss, KiB on Linux)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
