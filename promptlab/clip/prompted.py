"""The one prompted-tower path: open_clip's text and vision transformers run block by block, with learned
prompt tokens put where the deep prompt-learning methods (VPT, IVLP, MaPLe, PromptSRC) put them.

Text tower (sequence [SOS, ctx_1..ctx_n, class tokens, ".", EOT, pad]):
- block 0 input: the caller's embeddings [C, L, w] (the learned first-layer context already at positions
  1..n) + positional embedding over the whole sequence, learned tokens included;
- block l in 1..J-1: positions 1..n are REPLACED by the deep prompt P_l [n, w] (no positional embedding),
  every other position carries block l-1's output;
- ln_final, pooling at the EOT token, text projection. Attention is causal and pooling reads the EOT, so the
  sequence is cut at max(EOT)+1 first, as promptlab.clip.text does (same features, less work).

Vision tower:
- x = [CLS, patches] + positional embedding; the n_v first-layer prompts are APPENDED after the patches
  (no positional embedding), then ln_pre;
- block l in 1..J-1: the last n_v tokens are REPLACED by P_l [n_v, w]; CLS and patches never;
- output ln_post(CLS) · proj.

Without prompts both paths equal open_clip's encode_text / encode_image (tests/clip/test_prompted.py).
Frozen CLIP is held, not owned: methods keep their learned tensors, this class keeps none.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch.utils.checkpoint import checkpoint


class PromptedCLIP:
    """Runs the frozen open_clip CLIP towers with optional prompts. Not an nn.Module on purpose (CLIP must
    never enter a method's state dict). `checkpointing=True` recomputes each block in backward (activation
    checkpointing: less memory for big batches, same values)."""

    def __init__(self, clip_model: torch.nn.Module, checkpointing: bool = False):
        visual = clip_model.visual
        if getattr(clip_model, "text_pool_type", "argmax") != "argmax":
            raise ValueError("prompted towers need a CLIP text tower pooled at the EOT token (argmax)")
        if getattr(visual, "attn_pool", None) is not None or getattr(visual, "pool_type", "tok") != "tok":
            raise ValueError("prompted towers need a ViT image tower pooled at its CLS token")
        self.m = clip_model
        self.checkpointing = checkpointing

    # -- shapes --------------------------------------------------------------------------------------------
    @property
    def text_width(self) -> int:
        return int(self.m.token_embedding.weight.shape[1])

    @property
    def vision_width(self) -> int:
        return int(self.m.visual.conv1.weight.shape[0])

    @property
    def text_layers(self) -> int:
        return len(self.m.transformer.resblocks)

    @property
    def vision_layers(self) -> int:
        return len(self.m.visual.transformer.resblocks)

    # -- blocks --------------------------------------------------------------------------------------------
    def _block(self, block: torch.nn.Module, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        if self.checkpointing and torch.is_grad_enabled():
            return checkpoint(block, x, attn_mask=mask, use_reentrant=False)
        return block(x, attn_mask=mask)

    @staticmethod
    def _check_deep(deep: Sequence[torch.Tensor], n: int, layers: int, tower: str) -> None:
        if len(deep) > layers - 1:
            raise ValueError(f"{tower}: {len(deep)} deep prompts for {layers} blocks (at most {layers - 1})")
        if any(p.shape[0] != n for p in deep):
            raise ValueError(f"{tower}: every deep prompt must have the first layer's {n} tokens")

    # -- text ----------------------------------------------------------------------------------------------
    def encode_text(self, x: torch.Tensor, eot: torch.Tensor, deep: Sequence[torch.Tensor] = (),
                    n_ctx: int = 0, truncate: bool = True) -> torch.Tensor:
        """x [C, L, w] first-layer token embeddings (learned context at positions 1..n_ctx), eot [C] EOT
        positions, deep[l-1] [n_ctx, w] the prompt replacing positions 1..n_ctx at the input of block l
        -> unnormalised text features [C, embed_dim]. Gradients reach x and deep, never CLIP's weights."""
        m = self.m
        self._check_deep(deep, n_ctx, self.text_layers, "text")
        dtype = m.transformer.get_cast_dtype()
        length = int(eot.max()) + 1 if truncate else x.shape[1]  # causal + EOT pooling: see module docstring
        x = x[:, :length].to(dtype) + m.positional_embedding[:length].to(dtype)  # [C, L', w]
        mask = m.attn_mask[:length, :length] if m.attn_mask is not None else None
        for i, block in enumerate(m.transformer.resblocks):
            if 1 <= i <= len(deep):
                p = deep[i - 1].to(x.dtype).unsqueeze(0).expand(x.shape[0], -1, -1)  # [C, n, w]
                x = torch.cat([x[:, :1], p, x[:, 1 + n_ctx:]], dim=1)
            x = self._block(block, x, mask)
        x = m.ln_final(x)  # [C, L', w]
        pooled = x[torch.arange(x.shape[0], device=x.device), eot]  # [C, w]
        proj = m.text_projection
        return proj(pooled) if isinstance(proj, torch.nn.Linear) else pooled @ proj

    # -- vision --------------------------------------------------------------------------------------------
    def encode_image(self, pixels: torch.Tensor, first: torch.Tensor | None = None,
                     deep: Sequence[torch.Tensor] = ()) -> torch.Tensor:
        """pixels [B, 3, H, W] normalised, first [n_v, w] prompts appended at the input, deep[l-1] [n_v, w]
        replacing the last n_v tokens at the input of block l -> unnormalised image features [B, embed_dim]."""
        v = self.m.visual
        n_v = 0 if first is None else first.shape[0]
        if deep and first is None:
            raise ValueError("vision: deep prompts need first-layer prompts (the tokens they replace)")
        self._check_deep(deep, n_v, self.vision_layers, "vision")
        x = self._patch_tokens(pixels)  # [B, 1 + P, w]
        if first is not None:
            x = torch.cat([x, first.to(x.dtype).unsqueeze(0).expand(x.shape[0], -1, -1)], dim=1)
        x = v.ln_pre(x)  # [B, 1 + P + n_v, w]
        for i, block in enumerate(v.transformer.resblocks):
            if 1 <= i <= len(deep):
                p = deep[i - 1].to(x.dtype).unsqueeze(0).expand(x.shape[0], -1, -1)  # [B, n_v, w]
                x = torch.cat([x[:, :x.shape[1] - n_v], p], dim=1)
            x = self._block(block, x, None)
        pooled = v.ln_post(x[:, 0])  # [B, w]: LayerNorm is per token, so ln_post-then-pool is the same
        return pooled @ v.proj if v.proj is not None else pooled

    def _patch_tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        """open_clip's ViT embedding up to (not including) ln_pre: conv patches, CLS, positional embedding."""
        v = self.m.visual
        x = v.conv1(pixels.to(v.conv1.weight.dtype))  # [B, w, g, g]
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)  # [B, P, w]
        cls = v.class_embedding.view(1, 1, -1).expand(x.shape[0], -1, -1).to(x.dtype)
        x = torch.cat([cls, x], dim=1) + v.positional_embedding.to(x.dtype)  # [B, 1 + P, w]
        return v.patch_dropout(x)
