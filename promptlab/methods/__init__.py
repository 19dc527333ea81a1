"""Registry of prompt methods: one line per method. Tests parametrised over REGISTRY pick new ones up."""

from promptlab.methods.base import PromptMethod
from promptlab.methods.coop import CoOp
from promptlab.methods.zeroshot import ZeroShot

REGISTRY: dict[str, type[PromptMethod]] = {
    "zeroshot": ZeroShot,
    "coop": CoOp,
}
