"""Feature extraction over several processes with torchrun (torch.distributed), features.nproc > 1.

The features stage relaunches itself as `python -m torch.distributed.run --standalone --nproc-per-node N
stages/features.py ...` (or is started under torchrun by hand, e.g. with --nnodes on a cluster). Each rank
encodes its share of every split's shards (extract.rank_shards) and writes it as a part file in a folder beside
the output; after a barrier rank 0 reads the parts, puts the rows back in manifest order and writes the one
output exactly as a single process would: byte-identical files, because every batch holds the same images
whichever rank encodes it (batches never cross a shard). The part folder must be visible to every rank (one
machine, or a shared file system across nodes)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from promptlab.io import load_tensors, save_tensors


def relaunch(nproc: int) -> int:
    """Run this very command again under torchrun with `nproc` processes on this machine; its exit code."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           sys.argv[0], *sys.argv[1:]]
    return subprocess.call(cmd)


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def device(self, device: str) -> str:
        """`cuda` becomes this rank's GPU (local rank modulo the GPUs present: 2 ranks may share one)."""
        if device == "cuda" and self.world > 1:
            return f"cuda:{self.local_rank % torch.cuda.device_count()}"
        return device

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def start() -> Ranks:
    """This process's rank (0 of 1 outside torchrun). The process group (gloo: only barriers travel over it,
    tensors go through files) is joined when torchrun started us."""
    if not dist.is_torchelastic_launched():
        return Ranks()
    dist.init_process_group("gloo")
    return Ranks(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))


def stop(ranks: Ranks) -> None:
    if ranks.world > 1:
        dist.destroy_process_group()


def parts_dir(out: str | Path) -> Path:
    """Where the ranks' parts of `out` go: a hidden sibling that atomic_dir(out) clears if a run was killed."""
    out = Path(out)
    return out.parent / f".{out.name}.parts.tmp"


def write_part(folder: Path, split: str, ranks: Ranks, tensors: dict[str, torch.Tensor], keys: list[str]) -> None:
    save_tensors(folder / f"{split}.rank{ranks.rank:05d}.safetensors", tensors, {"keys": keys})


def merge_parts(folder: Path, split: str, order: list[str]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Every rank's part of `split` as one set of tensors, rows in `order` (the manifest's keys of the split)."""
    parts = [load_tensors(p) for p in sorted(folder.glob(f"{split}.rank*.safetensors"))]
    parts = [(t, meta["keys"]) for t, meta in parts if meta["keys"]]
    if not parts:
        return {}, []
    keys = [k for _, part_keys in parts for k in part_keys]
    where = {k: i for i, k in enumerate(keys)}
    rows = torch.tensor([where[k] for k in order if k in where], dtype=torch.long)
    merged = {name: torch.cat([t[name] for t, _ in parts])[rows] for name in parts[0][0]}
    return merged, [keys[i] for i in rows.tolist()]


def clear(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
