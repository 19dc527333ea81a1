"""Loading open_clip models: a zoo name + tag, or the project's own config + a local checkpoint."""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import open_clip
import torch

from promptlab.clip.resolve import looks_like_path
from promptlab.errors import UserError

CONFIG_DIR = Path(__file__).with_name("model_configs")
open_clip.add_model_config(CONFIG_DIR)  # registers "promptlab-tiny" and any config dropped beside it


@dataclass
class LoadedCLIP:
    model: torch.nn.Module  # open_clip CLIP, eval mode, frozen
    preprocess: Callable  # the model's own test transform (resize shorter side, center crop, its mean/std)
    tokenizer: Callable
    name: str

    @property
    def image_size(self) -> int:
        size = self.model.visual.image_size
        return size[0] if isinstance(size, (tuple, list)) else int(size)


def load_clip(name: str, pretrained: str | None, device: str = "cpu") -> LoadedCLIP:
    check_model(name, pretrained, device)
    if pretrained and not looks_like_path(pretrained):
        fetch_weights(name, pretrained)  # a failed download is one line saying where to put the file
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # pretrained null: the same random init in every process (e.g. torchrun ranks)
        model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=pretrained, device=device)
    model.eval().requires_grad_(False)
    return LoadedCLIP(model, preprocess, open_clip.get_tokenizer(name), name)


def check_model(name: str, pretrained: str | None, device: str = "cpu", check_file: bool = True) -> None:
    """model.name / model.pretrained / model.device, without loading or downloading anything (about a second):
    an unknown architecture or tag, a missing checkpoint file, OpenAI's QuickGELU weights on a GELU model (every
    feature silently wrong) and a CUDA device torch cannot see are each one UserError line. check_file=False
    (the world and pretrain stages, before the pipeline has written its own checkpoint) leaves the file to
    load_params, which already refused a missing one that no stage writes."""
    if name not in open_clip.list_models():
        near = difflib.get_close_matches(name, open_clip.list_models(), n=3)
        raise UserError(f"model.name: unknown open_clip model {name!r}"
                        + (f" (did you mean {', '.join(near)}?)" if near else " (see open_clip.list_models())"))
    if pretrained and looks_like_path(pretrained):
        if check_file and not Path(pretrained).is_file():
            raise UserError(f"model.pretrained: checkpoint not found: {pretrained}")
    elif pretrained:
        _check_tag(name, pretrained)
    check_device(device)


def _check_tag(name: str, tag: str) -> None:
    tags = open_clip.list_pretrained_tags_by_model(name)
    if not open_clip.pretrained.is_pretrained_cfg(name, tag):
        known = f"its tags: {', '.join(tags)}" if tags else "it has no open_clip tags"
        raise UserError(f"model.pretrained: {tag!r} is not an open_clip tag of {name} ({known}; or give a local "
                        "checkpoint path, or null)")
    tag_quick = open_clip.get_pretrained_cfg(name, tag).get("quick_gelu", False)
    if tag_quick and not open_clip.get_model_config(name).get("quick_gelu", False):
        raise UserError(f"model.pretrained: {tag!r} weights were trained with QuickGELU but {name} uses GELU "
                        f"(every feature would be wrong): set model.name: {name}-quickgelu")


def check_device(device: str) -> None:
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise UserError(f"model.device: {device!r} is not a torch device (cpu, cuda, cuda:1, mps)") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count()  # 0 without a driver or GPU (no exception)
        if dev.index is not None and dev.index >= count or not count:
            raise UserError(f"model.device: {device!r} but torch sees {count} CUDA device(s) (torch "
                            f"{torch.__version__}, CUDA build {torch.version.cuda}); use model.device: cpu")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"model.device: {device!r} but torch has no MPS backend here; use model.device: cpu")


def fetch_weights(name: str, tag: str) -> str:
    """Download (or find in open_clip's cache) the weights of a tag; on failure say where to put the file."""
    cfg = open_clip.get_pretrained_cfg(name, tag)
    try:
        return open_clip.pretrained.download_pretrained(cfg)
    except Exception as exc:  # urllib, huggingface_hub and OS errors alike: the user fixes all the same way
        source, cache = _source_and_cache(cfg)
        why = (str(exc).splitlines() or [""])[0][:160]
        raise UserError(f"model.pretrained: could not download {name} {tag!r} weights from {source} "
                        f"({type(exc).__name__}: {why}); offline, copy them into open_clip's cache ({cache}) "
                        "or set model.pretrained to the local checkpoint file") from None


def _source_and_cache(cfg: dict) -> tuple[str, str]:
    """Where open_clip downloads from and caches: the Hugging Face hub (its cache) when the tag has a hub entry
    and huggingface_hub is installed, else the tag's url (~/.cache/clip)."""
    if cfg.get("hf_hub") and open_clip.pretrained.has_hf_hub():
        from huggingface_hub.constants import HF_HUB_CACHE

        return cfg["hf_hub"], HF_HUB_CACHE
    return cfg.get("url", ""), os.path.expanduser("~/.cache/clip")


def build_untrained(name: str, seed: int) -> torch.nn.Module:
    """A freshly initialised model of the given config (used by the pretrain stage)."""
    torch.manual_seed(seed)
    return open_clip.create_model(name, pretrained=None)


def check_model_early(params) -> None:
    """The model params checked at the world and pretrain stages, the first a fresh `dvc repro` runs (both
    have no dependencies), so a model typo stops the pipeline before shards and features spend minutes; the
    stages that load the model check again (a changed model.* re-runs only those)."""
    m = params.model
    check_model(m.name, m.pretrained, m.device, check_file=False)
