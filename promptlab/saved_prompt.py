"""A trained prompt on disk: prompt.json (method name, its config, training class names, run info) and
prompt.safetensors (its learned tensors only, never CLIP, no pickle). Written by the run stage, read by
promptlab.api.PromptClassifier."""

from __future__ import annotations

from pathlib import Path

from promptlab.io import load_tensors, read_json, save_tensors, write_json
from promptlab.methods import method_class
from promptlab.methods.base import FrozenCLIP, PromptMethod
from promptlab.prompts.bank import ClassSet


def save_prompt(out_dir: Path, method: PromptMethod, classes: ClassSet, info: dict) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    save_tensors(out_dir / "prompt.safetensors", method.learned_state())
    write_json(out_dir / "prompt.json", {"method": method.name, "config": method.cfg.model_dump(),
                                         "train_classnames": classes.names, "template": classes.template, **info})


def load_prompt(run_dir: Path, clip: FrozenCLIP) -> PromptMethod:
    """Rebuild a trained method from its prompt.json + prompt.safetensors (weights only), on CLIP's device."""
    info = read_json(Path(run_dir) / "prompt.json")
    cls = method_class(info["method"])
    train_classes = ClassSet(info["train_classnames"], info["template"], None)  # names only (see PromptMethod)
    method = cls(cls.Config(**info["config"]), clip, train_classes).to(clip.device)
    tensors, _ = load_tensors(Path(run_dir) / "prompt.safetensors")
    method.load_state_dict(tensors)
    return method.eval()
