"""What the deep vision-language prompt methods (vpt, ivlp, maple, promptsrc) share: they train and score on
pixels, run both frozen towers through promptlab.clip.prompted at every step, and differ only in where their
prompt tensors come from (`prompts`) and in their loss.

Text prompts follow the official code (MaPLe / PromptSRC repos): the prompt string is ctx_init + " " + class
name + "."; its first n tokens after SOS are learned, initialised from the embeddings of the first n words of
ctx_init when n <= 4, else N(0, std²) with "X"*n as the prefix. The remaining words of ctx_init stay fixed
tokens (n = 2 with "a photo of a": "a photo" learns, "of a" stays).

Devices: one code path. On CUDA both towers run under bf16 autocast (fp32 master prompts); features are cast
to fp32 before normalisation, so logits and losses are fp32 everywhere. On CPU everything is fp32.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from promptlab.clip.prompted import PromptedCLIP
from promptlab.errors import UserError
from promptlab.methods.base import FrozenCLIP, PromptMethod
from promptlab.prompts.bank import ClassSet


@dataclass
class Prompts:
    """One forward's prompt tensors. text_first None: the text side is the frozen hand-crafted template."""

    text_first: torch.Tensor | None  # [n, w_text] learned first-layer context
    text_deep: list[torch.Tensor]  # [n, w_text] for blocks 1..J_t-1
    vision_first: torch.Tensor | None  # [n_v, w_vision] appended tokens
    vision_deep: list[torch.Tensor]  # [n_v, w_vision] for blocks 1..J_v-1


def init_text_context(clip: FrozenCLIP, n_ctx: int, ctx_init: str | None, std: float, option: str
                      ) -> tuple[torch.Tensor, str]:
    """(ctx [n, w] fp32, prompt prefix): the official rule (module docstring)."""
    text = clip.text
    if ctx_init and n_ctx <= 4:
        ids = text.tokenize([ctx_init])
        n_words = int(ids.argmax(dim=-1)) - 1
        if n_ctx > n_words:
            raise UserError(f"{option}: n_ctx {n_ctx} exceeds the {n_words} tokens of ctx_init {ctx_init!r}")
        return text.embed(ids)[0, 1:1 + n_ctx].detach().clone().float(), ctx_init
    return torch.randn(n_ctx, text.width, device=text.device) * std, " ".join(["X"] * n_ctx)


def random_prompts(count: int, n: int, width: int, std: float, device) -> torch.nn.ParameterList:
    """`count` independent N(0, std²) prompts [n, width] (the official per-block init)."""
    return torch.nn.ParameterList([torch.nn.Parameter(torch.randn(n, width, device=device) * std)
                                   for _ in range(count)])


def check_depth(depth: int, layers: int, option: str) -> None:
    if depth > layers:
        raise UserError(f"{option}={depth}: the model's tower has only {layers} blocks")


class ClassTokens:
    """Token embeddings [C, L, w] and EOT positions [C] of "<prefix> <name>." for a class list."""

    def __init__(self, clip: FrozenCLIP, names: list[str], prefix: str):
        ids = clip.text.tokenize([f"{prefix} {n.replace('_', ' ')}." for n in names])
        with torch.no_grad():
            self.embeddings = clip.text.embed(ids)
        self.eot = ids.argmax(dim=-1)


class DeepPromptMethod(PromptMethod):
    """Subclasses build their learned tensors in __init__ (after calling this one) and return them per forward
    from `prompts()`; `text_prefix` is the fixed prompt prefix (None for a frozen hand-crafted text side)."""

    inputs: ClassVar[str] = "pixels"

    def __init__(self, cfg, clip: FrozenCLIP, train_classes: ClassSet):
        super().__init__(cfg, clip, train_classes)
        self.__dict__["towers"] = PromptedCLIP(clip.loaded.model, checkpointing=cfg.checkpointing)
        self.text_prefix: str | None = None
        self._tokens: dict[tuple[str, ...], ClassTokens] = {}

    def prompts(self) -> Prompts:
        raise NotImplementedError

    def autocast(self):
        """bf16 autocast for the towers on CUDA (module docstring); nothing on CPU."""
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # -- features ------------------------------------------------------------------------------------------
    def tokens(self, classes: ClassSet) -> ClassTokens:
        key = tuple(classes.names)
        if key not in self._tokens:
            self._tokens[key] = ClassTokens(self.clip, classes.names, self.text_prefix)
        return self._tokens[key]

    def text_features(self, classes: ClassSet, prompts: Prompts | None = None) -> torch.Tensor:
        """[C, D] L2-normalised fp32 class features from the prompted text tower."""
        p = prompts or self.prompts()
        if p.text_first is None:
            return classes.hand_features.to(self.device)
        tok = self.tokens(classes)
        n = p.text_first.shape[0]
        ctx = p.text_first.to(tok.embeddings.dtype).unsqueeze(0).expand(len(classes), -1, -1)
        x = torch.cat([tok.embeddings[:, :1], ctx, tok.embeddings[:, 1 + n:]], dim=1)  # [C, L, w]
        with self.autocast():
            feats = self.towers.encode_text(x, tok.eot, p.text_deep, n_ctx=n)
        return F.normalize(feats.float(), dim=-1)

    def image_features(self, images: torch.Tensor, prompts: Prompts | None = None) -> torch.Tensor:
        """[B, D] L2-normalised fp32 features of normalised pixels [B, 3, H, W] from the prompted image tower."""
        p = prompts or self.prompts()
        with self.autocast():
            feats = self.towers.encode_image(images.to(self.device), p.vision_first, p.vision_deep)
        return F.normalize(feats.float(), dim=-1)

    # -- classification ------------------------------------------------------------------------------------
    def logits(self, batch, classes: ClassSet, cached: torch.Tensor | None = None) -> torch.Tensor:
        """[B, C] = τ · cos(prompted image, prompted class text); `batch.images` holds the pixels."""
        p = self.prompts()
        weights = cached if cached is not None else self.text_features(classes, p)
        return self.clip.logit_scale * self.image_features(batch.images, p) @ weights.t()

    def loss(self, batch, classes: ClassSet) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.logits(batch, classes)
        return F.cross_entropy(logits, batch.labels.to(logits.device)), logits
