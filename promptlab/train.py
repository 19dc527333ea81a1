"""The one training loop, for every method, over a source of training batches.

The default source is the cached features: an epoch visits every training image once in a seeded random
order and draws one of its V pre-encoded augmented views (this keeps CoOp's augmentation protocol without
running the image tower). Methods that train on pixels get a pixel source instead (same interface:
`epoch(e)` yields Batches). SGD with momentum, constant-lr warm-up then cosine decay stepped per epoch. Every
batch is moved to the method's device. A checkpoint after every epoch (learned tensors, momentum, the CPU and
CUDA RNG states, the epochs' records so far) lets an interrupted run resume to the same result and the same
per-epoch records (the resumed run reports the epochs before the interruption first, as they were logged)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Iterator

import torch
import torch.nn.functional as F

from promptlab.io import load_tensors, save_tensors
from promptlab.methods.base import Batch, PromptMethod, TrainData
from promptlab.methods.base_config import TrainConfig
from promptlab.prompts.bank import ClassSet

__all__ = ["TrainData", "FeatureSource", "train", "lr_at", "epoch_batches", "make_batch"]


def lr_at(cfg: TrainConfig, epoch: int) -> float:
    """Dassl's ConstantWarmupScheduler around CosineAnnealingLR(T_max=epochs): epochs < W = warmup_epochs use
    warmup_lr; the cosine starts after the warm-up (Dassl steps its successor only once the warm-up is over), so
    epoch W gets the full lr and epoch e >= W gets lr·(1 + cos(π(e − W)/epochs))/2 (never 0 when W > 0)."""
    if epoch < cfg.warmup_epochs:
        return cfg.warmup_lr
    return 0.5 * cfg.lr * (1 + math.cos(math.pi * (epoch - cfg.warmup_epochs) / cfg.epochs))


def epoch_batches(n: int, n_views: int, batch_size: int, seed: int, epoch: int):
    """Yield (indices, views) per batch; seeded per epoch so a resumed run draws the same batches.
    Like Dassl's train loader, the last incomplete batch is dropped when there is more than one batch."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(n, generator=gen)
    views = torch.randint(n_views, (n,), generator=gen)
    stop = n - n % batch_size if n >= batch_size else n
    for i in range(0, stop, batch_size):
        idx = order[i:i + batch_size]
        yield idx, views[idx]


def make_batch(data: TrainData, idx: torch.Tensor, views: torch.Tensor, need_patches: bool) -> Batch:
    feats = F.normalize(data.features[idx, views].float(), dim=-1)
    patches = data.patches[idx, views].float() if need_patches and data.patches is not None else None
    return Batch(feats, data.labels[idx], patches)


class FeatureSource:
    """Training batches from cached features: `epoch(e)` yields the epoch's seeded batches (CPU tensors)."""

    def __init__(self, data: TrainData, batch_size: int, seed: int, patches: bool):
        self.data, self.batch_size, self.seed, self.patches = data, batch_size, seed, patches

    def epoch(self, epoch: int) -> Iterator[Batch]:
        n, n_views = len(self.data.labels), self.data.features.shape[1]
        for idx, views in epoch_batches(n, n_views, self.batch_size, self.seed, epoch):
            yield make_batch(self.data, idx, views, self.patches)


def _checkpoint(path: Path, method: PromptMethod, opt: torch.optim.Optimizer, history: list[dict]) -> None:
    tensors = {f"method.{k}": v for k, v in method.learned_state().items()}
    for i, (p, state) in enumerate(((p, opt.state.get(p, {})) for p in method.parameters() if p.requires_grad)):
        if "momentum_buffer" in state and state["momentum_buffer"] is not None:
            tensors[f"optim.momentum.{i}"] = state["momentum_buffer"].detach().cpu()
    tensors["rng.torch"] = torch.get_rng_state()  # stochastic methods (sampling, mixup) resume exactly
    if method.device.type == "cuda":  # draws made on the GPU (e.g. torch.randn(..., device=cuda)) too
        tensors["rng.cuda"] = torch.cuda.get_rng_state(method.device)
    save_tensors(path, tensors, {"epoch": history[-1]["epoch"], "history": history})  # floats round-trip exactly


def _resume(path: Path, method: PromptMethod, opt: torch.optim.Optimizer) -> tuple[int, list[dict]]:
    """Restore a checkpoint; returns (the next epoch, the records of the epochs it holds)."""
    tensors, meta = load_tensors(path)
    method.load_state_dict({k.removeprefix("method."): v for k, v in tensors.items() if k.startswith("method.")})
    for i, p in enumerate(p for p in method.parameters() if p.requires_grad):
        if f"optim.momentum.{i}" in tensors:
            opt.state[p]["momentum_buffer"] = tensors[f"optim.momentum.{i}"].to(p.device)
    torch.set_rng_state(tensors["rng.torch"])
    if "rng.cuda" in tensors and method.device.type == "cuda":
        torch.cuda.set_rng_state(tensors["rng.cuda"], method.device)
    return int(meta["epoch"]) + 1, list(meta.get("history", []))


def train(method: PromptMethod, data: TrainData, classes: ClassSet, cfg: TrainConfig, *, seed: int,
          checkpoint: Path | None = None, on_epoch: Callable[[int, dict], None] | None = None,
          val: TrainData | None = None, source=None) -> list[dict]:
    """Train `method` in place; returns per-epoch {epoch, lr, loss, acc}. `data` is what `prepare`/`fit` see;
    the batches come from `source` (default: FeatureSource over `data`). `val` (the few-shot val draw) is
    used only by own-solver methods that pick hyperparameters on it (linear probe)."""
    classes = classes.to(method.device)
    method.prepare(data, classes)
    if method.own_solver:
        history = method.fit(data, classes, val)
        for record in history:
            if on_epoch:
                on_epoch(record["epoch"], record)
        method.eval()
        return history
    source = source or FeatureSource(data, cfg.batch_size, seed, method.needs_patches)
    params = [p for p in method.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    start, history = _resume(checkpoint, method, opt) if checkpoint is not None and checkpoint.exists() else (0, [])
    for record in history if on_epoch else ():  # a resumed run: the epochs before the interruption first
        on_epoch(record["epoch"], record)
    method.train()
    for epoch in range(start, cfg.epochs):
        lr = lr_at(cfg, epoch)
        for group in opt.param_groups:
            group["lr"] = lr
        total_loss, correct, seen = 0.0, 0, 0
        for step, batch in enumerate(source.epoch(epoch)):
            batch = batch.to(method.device)
            method.check_device(batch)
            opt.zero_grad(set_to_none=True)
            loss, logits = method.backward(batch, classes)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{method.name}: non-finite loss {loss.item()} at epoch {epoch} "
                                         f"step {step}")
            opt.step()
            total_loss += loss.item() * len(batch)
            correct += int((logits.argmax(dim=-1) == batch.labels).sum())
            seen += len(batch)
        method.on_epoch_end(epoch)
        record = {"epoch": epoch, "lr": lr, "loss": total_loss / seen, "acc": 100.0 * correct / seen}
        history.append(record)
        if checkpoint is not None:
            _checkpoint(checkpoint, method, opt, history)
        if on_epoch:
            on_epoch(epoch, record)
    method.finish_training()
    method.eval()
    return history
