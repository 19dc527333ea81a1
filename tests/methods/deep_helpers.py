"""Shared by the deep-prompt method tests: pixel batches and an independent class-prompt assembly."""

import torch

from promptlab.methods.base import Batch


def pixel_batch(n=4, n_classes=6, size=32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return Batch(None, torch.randint(n_classes, (n,), generator=gen),
                 images=torch.randn(n, 3, size, size, generator=gen))


def first_layer_text(clip, names, prefix, ctx):
    """[C, L, w]: "<prefix> <name>." embedded by open_clip, positions 1..n overwritten with ctx [n, w]."""
    ids = clip.loaded.tokenizer([f"{prefix} {n}." for n in names])
    x = clip.loaded.model.token_embedding(ids).clone()
    x[:, 1:1 + ctx.shape[0]] = ctx
    return x, ids.argmax(-1)


def grads_only_on(method, clip):
    """Every learned tensor got a non-zero gradient, no CLIP weight got one."""
    assert all(p.grad is None for p in clip.loaded.model.parameters())
    missing = [n for n, p in method.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing, missing

