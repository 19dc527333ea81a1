"""The `cupl:` params block (torch-free: validating params.yaml imports only this)."""

from __future__ import annotations


from promptlab.methods.base_config import MethodConfig, register_method


@register_method("cupl", "promptlab.methods.cupl.method:CuPL")
class CuPLConfig(MethodConfig):
    with_templates: bool = False
