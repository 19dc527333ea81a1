"""Zero-shot CLIP: class weights from hand-crafted prompts (Radford et al., 2021).

`template: dataset` uses the dataset's single hand-crafted template (CoOp's table); `clip80` / `clip7` use
CLIP's ImageNet template ensembles (normalise each template's feature, average, renormalise). The features
come from the cached prompt bank, so nothing is encoded here."""

from __future__ import annotations

from typing import Literal

import torch

from promptlab.methods.base import MethodConfig, PromptMethod
from promptlab.prompts.bank import ClassSet


class ZeroShot(PromptMethod):
    name = "zeroshot"
    trainable = False

    class Config(MethodConfig):
        template: Literal["dataset", "clip80", "clip7"] = "dataset"

    def text_features(self, classes: ClassSet) -> torch.Tensor:
        if self.cfg.template == "dataset":
            return classes.hand_features
        return classes.ensembles[self.cfg.template]
