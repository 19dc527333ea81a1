"""IVLP: independent vision-language prompting (the baseline of the MaPLe and PromptSRC papers).

Each tower learns its own prompts, with no coupling between them:
    text   ctx [n, w_t] at positions 1..n of the first layer (init from ctx_init), P^t_l [n, w_t] replacing
           positions 1..n at the input of blocks l = 1..J_t-1, N(0, 0.02²);
    vision P^v_0 [n_v, w_v] appended after the patches, P^v_l [n_v, w_v] replacing the last n_v tokens at the
           input of blocks l = 1..J_v-1, all N(0, 0.02²);
    loss   CE(τ · cos(f_v(x; P^v), f_t(c; ctx, P^t)), y).
Insertion rules: promptlab/clip/prompted.py; text init and devices: promptlab/methods/deep_prompts.py.
"""

from __future__ import annotations

import torch

from promptlab.methods.deep_prompts import (DeepPromptMethod, Prompts, check_depth, init_text_context,
                                            random_prompts)


class IVLP(DeepPromptMethod):
    def __init__(self, cfg, clip, train_classes):
        super().__init__(cfg, clip, train_classes)
        t = self.towers
        check_depth(cfg.depth_text, t.text_layers, f"{self.name}.depth_text")
        check_depth(cfg.depth_vision, t.vision_layers, f"{self.name}.depth_vision")
        ctx, self.text_prefix = init_text_context(clip, cfg.n_ctx_text, cfg.ctx_init, cfg.init_std,
                                                  f"{self.name}.n_ctx_text")
        self.ctx = torch.nn.Parameter(ctx)  # [n, w_t]
        self.text_deep = random_prompts(cfg.depth_text - 1, cfg.n_ctx_text, t.text_width, cfg.init_std,
                                        self.device)
        vision = random_prompts(cfg.depth_vision, cfg.n_ctx_vision, t.vision_width, cfg.init_std, self.device)
        self.vision_first = vision[0] if cfg.depth_vision else None  # [n_v, w_v]
        self.vision_deep = torch.nn.ParameterList(list(vision)[1:])

    def prompts(self) -> Prompts:
        return Prompts(self.ctx, list(self.text_deep), self.vision_first, list(self.vision_deep))
