"""CuPL: "What does a platypus look like? Generating customized prompts for zero-shot image classification"
(Pratt et al., ICCV 2023).

Zero-shot with LLM-written descriptions: w_c = normalise(mean_s g(s)) over class c's description sentences s
(the normalised mean is cached in the prompt bank, built by the `prompts` stage from a CuPL-format JSON file).
`with_templates: true` also uses CLIP's 80 templates; our reading of the paper's "CuPL + e" combination is
an equal-weight mix of the two normalised class embeddings (the paper averages all sentence features; the
per-class sentence counts are not kept in the bank)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from promptlab.errors import UserError
from promptlab.methods.cupl.config import CuPLConfig
from promptlab.methods.base import PromptMethod
from promptlab.prompts.bank import ClassSet


class CuPL(PromptMethod):
    trainable = False

    def text_features(self, classes: ClassSet) -> torch.Tensor:
        if classes.descriptions is None:
            raise UserError("cupl needs LLM descriptions in the prompt bank (prompts.descriptions.backend is none, or the file was missing)")
        if not self.cfg.with_templates:
            return classes.descriptions
        return F.normalize(classes.descriptions + classes.ensembles["clip80"], dim=-1)
