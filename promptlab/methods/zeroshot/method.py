"""Zero-shot CLIP: class weights from hand-crafted prompts (Radford et al., 2021).

`template: dataset` uses the dataset's single hand-crafted template (CoOp's table); `clip80` / `clip7` use
CLIP's ImageNet template ensembles (normalise each template's feature, average, renormalise), and any other
name a template list of the prompt bank. The features come from the cached bank, so nothing is encoded here."""

from __future__ import annotations

import torch

from promptlab.methods.zeroshot.config import ZeroShotConfig
from promptlab.methods.base import PromptMethod
from promptlab.prompts.bank import ClassSet


class ZeroShot(PromptMethod):
    trainable = False

    def text_features(self, classes: ClassSet) -> torch.Tensor:
        return classes.template_features(self.cfg.template, option=f"{self.name}.template")
