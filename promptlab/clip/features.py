"""Image feature extraction: projected global embedding + projected patch tokens, computed once.

open_clip's VisionTransformer returns patch tokens after ln_post but before the projection; we apply
`visual.proj` so patches live in the same joint space as the text features (docs/architecture.md "Features")."""

from __future__ import annotations

import hashlib

import torch
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode

from promptlab.clip.model import LoadedCLIP


@torch.no_grad()
def encode_images(model: torch.nn.Module, images: torch.Tensor, patches: bool = True):
    """images [B, 3, H, W] (normalised) -> (global [B, D], patches [B, P, D] or None), unnormalised fp32."""
    visual = model.visual
    visual.output_tokens = True
    try:
        pooled, tokens = visual(images)
    finally:
        visual.output_tokens = False
    patch_emb = tokens @ visual.proj if patches else None
    return pooled.float(), (patch_emb.float() if patch_emb is not None else None)


def train_transform(clip: LoadedCLIP, scale_min: float = 0.08) -> T.Compose:
    """CoOp's training augmentation: random-resized-crop (bicubic) + horizontal flip, the model's mean/std."""
    normalize = next(t for t in clip.preprocess.transforms if isinstance(t, T.Normalize))
    return T.Compose([
        T.RandomResizedCrop(clip.image_size, scale=(scale_min, 1.0), interpolation=InterpolationMode.BICUBIC),
        T.RandomHorizontalFlip(),
        T.ToTensor(),
        normalize,
    ])


def view_seed(base_seed: int, key: str, view: int) -> int:
    """A seed per (sample, view) that does not depend on iteration order or worker layout."""
    digest = hashlib.sha256(f"{base_seed}:{key}:{view}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF


def augmented_views(image, key: str, n_views: int, transform, base_seed: int) -> torch.Tensor:
    """V seeded augmented views of one PIL image -> [V, 3, H, W]."""
    views = []
    for v in range(n_views):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(view_seed(base_seed, key, v))
            views.append(transform(image))
    return torch.stack(views)
