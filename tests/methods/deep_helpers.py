"""Shared by the deep-prompt method tests: pixel batches and an independent class-prompt assembly."""

from types import SimpleNamespace

import torch


def pixel_batch(n=4, n_classes=6, size=32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return SimpleNamespace(images=torch.randn(n, 3, size, size, generator=gen),
                           labels=torch.randint(n_classes, (n,), generator=gen))


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


def _name_unregistered():  # TEMPORARY until the registry names these classes
    from promptlab.methods.ivlp.method import IVLP
    from promptlab.methods.maple.method import MaPLe
    from promptlab.methods.promptsrc.method import PromptSRC
    from promptlab.methods.vpt.method import VPT

    for cls, name in ((IVLP, "ivlp"), (MaPLe, "maple"), (PromptSRC, "promptsrc"), (VPT, "vpt")):
        if "name" not in cls.__dict__:
            cls.name = name


_name_unregistered()
