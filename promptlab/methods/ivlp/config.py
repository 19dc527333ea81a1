"""IVLP's params block (torch-free), and the settings every deep vision-language prompt method shares."""

from __future__ import annotations

from pydantic import Field

from promptlab.methods.base_config import TrainConfig, register_method


class DeepPromptConfig(TrainConfig):
    """Shared by vpt, ivlp, maple and promptsrc: the official repos' Dassl schedule (SGD 0.9, wd 5e-4, one
    constant warm-up epoch at 1e-5, then cosine) at batch 4."""

    batch_size: int = Field(4, ge=1)
    init_std: float = Field(0.02, gt=0)  # N(0, std²) for random first-layer and deep prompts
    checkpointing: bool = False  # activation checkpointing in both towers (less memory, same values)


@register_method("ivlp", "promptlab.methods.ivlp.method:IVLP")
class IVLPConfig(DeepPromptConfig):
    """Independent vision-language prompts: the PromptSRC repo's IVLP baseline (4 + 4 tokens, depth 9)."""

    epochs: int = Field(20, ge=1)
    lr: float = Field(0.0025, gt=0)
    n_ctx_text: int = Field(4, ge=1)
    n_ctx_vision: int = Field(4, ge=1)
    depth_text: int = Field(9, ge=1)  # J: first layer + J-1 deep prompts (blocks 1..J-1)
    depth_vision: int = Field(9, ge=0)  # 0: no vision prompts (text-only deep prompting)
    ctx_init: str | None = "a photo of a"  # its first n_ctx_text tokens init the text context (n <= 4)
