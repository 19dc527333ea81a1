"""Contrastive pretraining of the project's tiny CLIP on captioned synthetic images (docs/architecture.md).

Standard CLIP objective (open_clip's ClipLoss: symmetric cross-entropy over the batch's image-caption similarity
matrix), learned temperature (clamped at 100 like CLIP). AdamW with linear warm-up then cosine decay. Captions are encoded
through the same truncated text path the prompt methods use. The result is saved as an ordinary open_clip
checkpoint (safetensors state dict), loadable with `model.pretrained: <path>`."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from open_clip.loss import ClipLoss
from safetensors.torch import save_file

from promptlab.clip.model import build_untrained
from promptlab.clip.text import TextEncoder
from promptlab.data import synthetic


def to_model_input(images: np.ndarray, mean: tuple, std: tuple) -> torch.Tensor:
    """uint8 [n, H, W, 3] -> normalised float [n, 3, H, W]."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255)
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def _lr(step: int, cfg) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return 0.5 * cfg.lr * (1 + math.cos(math.pi * progress))


def _batch_colours(cfg, step: int) -> list[str] | None:
    """Every other step (when cfg.hard_batch_colours > 0) draw the batch from only that many colours, so that
    shape, not colour, must separate the images (colour alone is learnt first and then stalls the loss)."""
    if cfg.hard_batch_colours == 0 or step % 2 == 0:
        return None
    rng = np.random.default_rng([cfg.seed, 31337, step])
    return list(rng.choice(synthetic.COLOURS, size=cfg.hard_batch_colours, replace=False))


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """CLIP's recipe: no weight decay on gains, biases, LayerNorms and the logit scale."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        exempt = p.ndim < 2 or "ln" in name or "bias" in name or "logit_scale" in name
        (no_decay if exempt else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def pretrain(model_name: str, cfg, image_size: int, log=print, shades: bool = True) -> torch.nn.Module:
    """cfg: PretrainParams. `shades` (world.class_shades): colours vary over the labelled datasets' shade range.
    Returns the trained model in eval mode."""
    torch.manual_seed(cfg.seed)
    model = build_untrained(model_name, cfg.seed).train()
    pp = open_clip.get_model_preprocess_cfg(model)
    text = TextEncoder(model, open_clip.get_tokenizer(model_name))
    clip_loss = ClipLoss()
    opt = torch.optim.AdamW(_param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6)
    for step in range(cfg.steps):
        for group in opt.param_groups:
            group["lr"] = _lr(step, cfg)
        images, captions = synthetic.captioned_batch(cfg.seed * 1_000_003 + step, cfg.batch_size, image_size,
                                                     cfg.domain_weights, _batch_colours(cfg, step), shades)
        img = F.normalize(model.encode_image(to_model_input(images, pp["mean"], pp["std"])), dim=-1)
        txt = F.normalize(text.encode_ids(text.tokenize(captions)), dim=-1)
        loss = clip_loss(img, txt, model.logit_scale.exp())  # img, txt: [B, D] unit rows
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        if step % 50 == 0 or step == cfg.steps - 1:
            log(f"pretrain step {step}/{cfg.steps} loss {loss.item():.3f} scale {model.logit_scale.exp().item():.1f}")
    return model.eval()


@torch.no_grad()
def zero_shot_report(model: torch.nn.Module, model_name: str, seed: int, per_class: int, image_size: int,
                     domains: list[str], shades: bool = True) -> dict:
    """Zero-shot accuracy (%) with "a photo of a {}." on freshly rendered images (a stream disjoint from the
    dataset and the pretraining batches), drawn like the labelled datasets (class shades when `shades`): all 48
    classes, and base / new halves each scored on its own half."""
    pp = open_clip.get_model_preprocess_cfg(model)
    classes = synthetic.world_classes()
    text = TextEncoder(model, open_clip.get_tokenizer(model_name))
    weights = text.encode_texts([f"a photo of a {c.name}." for c in classes])  # [48, D]
    half = math.ceil(len(classes) / 2)
    halves = {"all": list(range(len(classes))), "base": list(range(half)), "new": list(range(half, len(classes)))}
    report = {}
    for d_index, domain in enumerate(domains):
        rngs = [np.random.default_rng([seed, 7777, d_index, c.label, i]) for c in classes for i in range(per_class)]
        images = np.stack([np.asarray(synthetic.render(c, domain, rngs[k * per_class + i], image_size,
                                                           synthetic.labelled_shade(c, shades)))
                           for k, c in enumerate(classes) for i in range(per_class)])
        labels = torch.arange(len(classes)).repeat_interleave(per_class)
        feats = F.normalize(model.encode_image(to_model_input(images, pp["mean"], pp["std"])), dim=-1)
        sims = feats @ weights.t()  # [N, 48]
        for name, labels_in in halves.items():
            keep = torch.isin(labels, torch.tensor(labels_in))
            pred = torch.tensor(labels_in)[sims[keep][:, labels_in].argmax(dim=-1)]
            report[f"{domain}/{name}"] = round(100.0 * float((pred == labels[keep]).float().mean()), 2)
        report[f"{domain}/chance_new"] = round(100.0 / len(halves["new"]), 2)
    return report


def save_checkpoint(model: torch.nn.Module, path: Path) -> None:
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
