"""Model params errors are one line and come early (issue 15): unknown tags list the valid ones, OpenAI weights
need the -quickgelu architecture, a failed download says where to put the file, a CUDA device that is not
there is refused before any work. Nothing here downloads (the download itself is replaced)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import open_clip
import pytest
import yaml

from assertions import one_line_user_error as _error
from promptlab.clip.model import check_model, load_clip

REPO = Path(__file__).resolve().parents[2]


def test_an_unknown_tag_lists_the_architectures_tags():
    msg = _error(check_model, "ViT-B-16", "laion9")
    tags = open_clip.list_pretrained_tags_by_model("ViT-B-16")
    assert msg.startswith("model.pretrained: 'laion9' is not an open_clip tag of ViT-B-16 (its tags: ")
    assert ", ".join(tags) in msg and "openai" in tags
    assert "has no open_clip tags" in _error(check_model, "promptlab-tiny", "openai")


def test_an_unknown_architecture_suggests_near_names():
    assert _error(check_model, "ViT-B16", None) == (
        "model.name: unknown open_clip model 'ViT-B16' (did you mean ViT-B-16, ViT-S-16, ViT-M-16?)")


def test_openai_weights_on_a_gelu_model_are_refused_naming_the_quickgelu_variant():
    assert _error(check_model, "ViT-B-16", "openai") == (
        "model.pretrained: 'openai' weights were trained with QuickGELU but ViT-B-16 uses GELU (every feature would "
        "be wrong): set model.name: ViT-B-16-quickgelu")
    check_model("ViT-B-16-quickgelu", "openai")  # the right pair passes
    check_model("ViT-B-16", "laion2b_s34b_b88k")  # GELU weights on a GELU model pass


def test_a_failed_download_says_where_to_put_the_checkpoint(monkeypatch):
    def offline(cfg, *args, **kwargs):
        raise OSError("[Errno -2] Name or service not known")

    monkeypatch.setattr(open_clip.pretrained, "download_pretrained", offline)
    monkeypatch.setattr(open_clip.pretrained, "has_hf_hub", lambda necessary=False: False)  # url weights
    msg = _error(load_clip, "ViT-B-32-quickgelu", "openai")
    url = open_clip.get_pretrained_cfg("ViT-B-32-quickgelu", "openai")["url"]
    assert url.startswith("https://openaipublic") and msg == (
        f"model.pretrained: could not download ViT-B-32-quickgelu 'openai' weights from {url} (OSError: [Errno -2] "
        f"Name or service not known); offline, copy them into open_clip's cache "
        f"({Path('~/.cache/clip').expanduser()}) or set model.pretrained to the local checkpoint file")


def test_cuda_without_a_cuda_device_is_one_line(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert _error(check_model, "promptlab-tiny", None, "cuda").startswith(
        "model.device: 'cuda' but torch sees 0 CUDA device(s) (torch ")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    check_model("promptlab-tiny", None, "cuda")
    assert "'cuda:1' but torch sees 1 CUDA device(s)" in _error(check_model, "promptlab-tiny", None, "cuda:1")
    assert _error(check_model, "promptlab-tiny", None, "gpu") == (
        "model.device: 'gpu' is not a torch device (cpu, cuda, cuda:1, mps)")


def test_a_missing_checkpoint_file_is_named():
    assert _error(check_model, "promptlab-tiny", "ckpt/none.safetensors") == (
        "model.pretrained: checkpoint not found: ckpt/none.safetensors")
    check_model("promptlab-tiny", "ckpt/none.safetensors", check_file=False)  # left to load_params


@pytest.mark.parametrize("model, line", [
    ({"name": "ViT-B-16", "pretrained": "openai"}, "set model.name: ViT-B-16-quickgelu"),
    ({"name": "ViT-B-16-quickgelu", "pretrained": "opena1"}, "'opena1' is not an open_clip tag of ViT-B-16-quickgelu"),
])
def test_the_world_stage_stops_at_a_model_typo_before_building_anything(tmp_path, model, line):
    """`world` (with `pretrain`, the first stage of a fresh repro) rejects the model before writing data."""
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"model": model}))
    proc = subprocess.run([sys.executable, str(REPO / "stages" / "world.py"), "--out", "raw"], cwd=tmp_path,
                          capture_output=True, text=True)
    assert proc.returncode == 2 and line in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and not (tmp_path / "raw").exists()
