"""The `dualview:` params block (torch-free: validating params.yaml imports only this).

Every open choice of our reading is a key here; the defaults are the reading measured best on the default
world (method.py's docstring gives the numbers and the ablations)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from promptlab.methods.base_config import register_method
from promptlab.methods.coop.config import CoOpConfig


@register_method("dualview", "promptlab.methods.dualview.method:DualView")
class DualViewConfig(CoOpConfig):  # n_ctx 4 from "a photo of a", batch 32, lr 0.002, 200 epochs: CoOp's
    hand_view: str = "clip80"  # T^h: clip80 | clip7 | dataset (its template) | a template list of the bank
    lam_mi: float = Field(1.0, ge=0)  # weight of the InfoNCE (mutual-information) term
    tau_mi: float = Field(0.07, gt=0)  # InfoNCE temperature
    visual_aug: Literal["prototype", "mixup", "none"] = "mixup"
    beta: float = Field(1.0, ge=0)  # β: prototype strength in t̃_c = normalise(t^s_c + β·p_c)
    # prototype of an image's own class: leave_one_out (from the other training images of the class, never
    # the scored image itself) | all (every shot, the scored image included)
    prototype_source: Literal["leave_one_out", "all"] = "leave_one_out"
    lam_proto: float = Field(1.0, ge=0)  # weight of the prototype-injected CE term
    mixup_alpha: float = Field(1.0, gt=0)  # α of Beta(α, α)
    lam_mix: float = Field(1.0, ge=0)  # weight of the intra-class mixup CE term
