"""VPT (deep): learned prompts in the image tower only; the class weights are the dataset's hand-crafted
template encoded by the frozen text tower (classes.hand_features).

    vision P_0 [n_v, w_v] appended after the patches, P_l replacing the last n_v tokens at the input of blocks
           l = 1..J-1, all N(0, 0.02²) (promptlab/clip/prompted.py);
    loss   CE(τ · cos(f_v(x; P), w^hand_c), y).
It is IVLP's vision half: an ablation separating what the vision prompts alone contribute.
"""

from __future__ import annotations

import torch

from promptlab.methods.deep_prompts import DeepPromptMethod, Prompts, check_depth, random_prompts


class VPT(DeepPromptMethod):
    def __init__(self, cfg, clip, train_classes):
        super().__init__(cfg, clip, train_classes)
        t = self.towers
        check_depth(cfg.depth_vision, t.vision_layers, f"{self.name}.depth_vision")
        vision = random_prompts(cfg.depth_vision, cfg.n_ctx_vision, t.vision_width, cfg.init_std, self.device)
        self.vision_first = vision[0]  # [n_v, w_v]
        self.vision_deep = torch.nn.ParameterList(list(vision)[1:])

    def prompts(self) -> Prompts:
        return Prompts(None, [], self.vision_first, list(self.vision_deep))
