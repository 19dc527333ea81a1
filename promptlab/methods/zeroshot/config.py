"""The `zeroshot:` params block (torch-free: validating params.yaml imports only this)."""

from __future__ import annotations


from promptlab.methods.base_config import MethodConfig, register_method


@register_method("zeroshot", "promptlab.methods.zeroshot.method:ZeroShot")
class ZeroShotConfig(MethodConfig):
    template: str = "dataset"  # dataset | clip80 | clip7 | a template list of the prompt bank
