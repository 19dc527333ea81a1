"""Reference implementations the benchmarks compare promptlab against. Not library features: they exist to be
timed against (and, in tests/clip/test_equivalence.py, shown equal to) the project's own paths.

- ClassicCoOp: the per-step trainer of the CoOp / Dassl code bases. Every step decodes the batch's images,
  applies CoOp's training augmentation afresh (random-resized-crop + flip, the global RNG, no cache), runs the
  frozen image tower, then the prompt learner and text encoder with backward and an SGD step.
- FullContextTextEncoder: the text encoder of the CoOp code (all context_length = 77 positions through the
  transformer, pool the EOT row, project it) in place of promptlab's truncation to the longest prompt.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from promptlab.clip.features import train_transform
from promptlab.clip.model import LoadedCLIP
from promptlab.clip.text import TextEncoder
from promptlab.data.shards import decode_image
from promptlab.methods.base_config import TrainConfig
from promptlab.methods.base import Batch, PromptMethod
from promptlab.prompts.bank import ClassSet
from promptlab.train import epoch_batches, lr_at


class FullContextTextEncoder(TextEncoder):
    """CoOp's TextEncoder.forward: x + pos over the full context, transformer with the full causal mask,
    ln_final, the EOT row @ text_projection. No truncation."""

    def encode_tokens(self, x: torch.Tensor, eot: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.to(self.dtype) + self.m.positional_embedding.to(self.dtype)  # x: [C, context_length, width]
        x = self.m.transformer(x, attn_mask=self.m.attn_mask)
        x = self.m.ln_final(x)
        pooled = x[torch.arange(x.shape[0], device=x.device), eot]  # [C, width]
        proj = self.m.text_projection
        pooled = proj(pooled) if isinstance(proj, torch.nn.Linear) else pooled @ proj
        return pooled, x  # tokens unprojected: nothing here reads them


class ClassicCoOp:
    """Trains a PromptMethod (CoOp) the classic way over raw image bytes [(key, bytes, label)]."""

    def __init__(self, clip: LoadedCLIP, method: PromptMethod, classes: ClassSet, cfg: TrainConfig,
                 crop_scale_min: float = 0.08):
        self.clip, self.method, self.classes, self.cfg = clip, method, classes, cfg
        self.augment = train_transform(clip, crop_scale_min)  # CoOp's: bicubic RRC + flip + CLIP mean/std
        params = [p for p in method.parameters() if p.requires_grad]
        self.opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)

    def images(self, samples) -> torch.Tensor:
        """Decode + a fresh random augmentation per image (Dassl's DatasetWrapper) -> [B, 3, H, W]."""
        return torch.stack([self.augment(decode_image(data)) for _, data, _ in samples])

    @torch.no_grad()
    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        """The frozen image tower, every step (CoOp's CustomCLIP.forward), L2-normalised."""
        return F.normalize(self.clip.model.encode_image(images).float(), dim=-1)

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """τ · cos(image tower(images), w_c): what a classic step computes from preprocessed images."""
        with torch.no_grad():
            labels = torch.zeros(len(images), dtype=torch.long)  # unused by logits
            return self.method.logits(Batch(self.image_features(images), labels), self.classes)

    def step(self, samples) -> dict[str, float]:
        t0 = time.perf_counter()
        images = self.images(samples)
        t1 = time.perf_counter()
        feats = self.image_features(images)
        t2 = time.perf_counter()
        labels = torch.tensor([label for _, _, label in samples])
        self.opt.zero_grad(set_to_none=True)
        loss, _ = self.method.backward(Batch(feats, labels), self.classes)
        self.opt.step()
        t3 = time.perf_counter()
        return {"data_s": t1 - t0, "image_tower_s": t2 - t1, "prompt_s": t3 - t2, "loss": float(loss)}

    def epoch(self, samples, epoch: int, seed: int = 1, max_steps: int | None = None) -> list[dict]:
        """One epoch in the same batch order as promptlab's loop (seeded permutation, last partial batch
        dropped); returns per-step timings."""
        self.method.train()
        for group in self.opt.param_groups:
            group["lr"] = lr_at(self.cfg, epoch)
        steps = []
        for idx, _ in epoch_batches(len(samples), 1, self.cfg.batch_size, seed, epoch):
            steps.append(self.step([samples[i] for i in idx.tolist()]))
            if max_steps is not None and len(steps) >= max_steps:
                break
        return steps
