"""MaPLe: Multi-modal Prompt Learning (Khattak et al., CVPR 2023).

Vision prompts are functions of the text prompts (the coupling that distinguishes it from IVLP):
    text   ctx [n, w_t] at positions 1..n of the first layer (init: the first n tokens of "a photo of a");
           P_l [n, w_t] replacing positions 1..n at the input of blocks l = 1..J-1, N(0, 0.02²);
    vision Linear_0(ctx) [n, w_v] appended after the patches; Linear_l(P_l) replacing the last n tokens at
           the input of block l. Linear_1..J-1 start as copies of one initialisation (torch's default Linear
           init), Linear_0 has its own;
    loss   CE only.
The official class hard-codes ViT-B/16's widths (512 -> 768); here w_t and w_v come from the model.
"""

from __future__ import annotations

import copy

import torch

from promptlab.methods.deep_prompts import (DeepPromptMethod, Prompts, check_depth, init_text_context,
                                            random_prompts)


class MaPLe(DeepPromptMethod):
    def __init__(self, cfg, clip, train_classes):
        super().__init__(cfg, clip, train_classes)
        t = self.towers
        check_depth(cfg.depth, min(t.text_layers, t.vision_layers), f"{self.name}.depth")
        ctx, self.text_prefix = init_text_context(clip, cfg.n_ctx, cfg.ctx_init, cfg.init_std,
                                                  f"{self.name}.n_ctx")
        self.ctx = torch.nn.Parameter(ctx)  # [n, w_t]
        self.proj = torch.nn.Linear(t.text_width, t.vision_width, device=self.device)  # w_t -> w_v
        self.text_deep = random_prompts(cfg.depth - 1, cfg.n_ctx, t.text_width, cfg.init_std, self.device)
        one = torch.nn.Linear(t.text_width, t.vision_width, device=self.device)
        self.deep_proj = torch.nn.ModuleList([copy.deepcopy(one) for _ in range(cfg.depth - 1)])

    def prompts(self) -> Prompts:
        deep = list(self.text_deep)
        return Prompts(self.ctx, deep, self.proj(self.ctx), [f(p) for f, p in zip(self.deep_proj, deep)])
