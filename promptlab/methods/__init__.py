"""Prompt methods, one folder each (promptlab/methods/<name>/: config.py, the torch-free params block that
registers the method, and method.py, its torch code), on the shared base in base.py. Importing this package
imports no torch; `method_class(name)` loads a method's code.

Adding a method: README "Adding a method" lists every file it touches."""

from promptlab.methods.base_config import MethodSpec, methods


def method_class(name: str):
    """The PromptMethod subclass registered as `name` (imports torch and the method's code)."""
    specs = methods()
    if name not in specs:
        raise KeyError(f"unknown method {name!r} (registered: {', '.join(specs)})")
    return specs[name].load()


__all__ = ["MethodSpec", "methods", "method_class"]
