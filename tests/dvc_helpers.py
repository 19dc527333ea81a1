"""Temporary DVC repositories for the tests that run the real `dvc` (test_pipeline.py, test_paper_pipeline.py,
test_beyond_one_machine.py): a copy of the project's code and dvc.yaml with a given params.yaml, committed to a
fresh git repo like a clone."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
DVC = [sys.executable, "-m", "dvc"]
ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
       "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}


def sh(cmd: list[str], cwd: Path, env: dict | None = None, timeout: float = 1200) -> str:
    """Run a command, fail the test with its output tail if it fails or outlives `timeout` seconds (killed then,
    so a hung tool fails its test instead of the whole run); stdout + stderr."""
    try:
        proc = subprocess.run(cmd, cwd=cwd, env=env or ENV, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        out = b"".join(x if isinstance(x, bytes) else x.encode() for x in (exc.stdout, exc.stderr) if x)
        raise AssertionError(f"{' '.join(map(str, cmd))} ran past {timeout} s:\n{out.decode()[-3000:]}") from None
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


def stages_run(output: str) -> list[str]:
    """The stages `dvc repro` / `dvc exp run` ran, in order, from its output."""
    return re.findall(r"Running stage '([^']+)'", output)


def merge(base: dict, over: dict) -> dict:
    """`over` merged into `base` section by section (nested dicts merged, other values replaced)."""
    out = dict(base)
    for key, value in over.items():
        out[key] = merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return out


def make_repo(path: Path, params: dict) -> Path:
    """A git + DVC repo at `path` holding the project's code, dvc.yaml and `params` as params.yaml."""
    path.mkdir(parents=True)
    for name in ("dvc.yaml", ".gitignore", ".dvcignore"):
        shutil.copy(REPO / name, path / name)
    for name in ("stages", "promptlab"):
        shutil.copytree(REPO / name, path / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh(["git", "init", "-q"], path)
    sh(DVC + ["init", "-q"], path)
    sh(DVC + ["config", "core.analytics", "false"], path)
    sh(["git", "add", "-A"], path)
    sh(["git", "commit", "-qm", "init"], path)  # like a clone: DVCLive and `dvc exp` need a commit
    return path


def lock_stages(repo: Path) -> dict:
    return yaml.safe_load((repo / "dvc.lock").read_text())["stages"]


def out_hashes(repo: Path) -> dict[str, str]:
    """{output path: md5} of every stage output recorded in dvc.lock."""
    return {o["path"]: o["md5"] for stage in lock_stages(repo).values() for o in stage.get("outs", [])}


# CoOp's EuroSAT classes as its split file names them (CoOp's own count, 10, is checked by the shard stage)
EUROSAT = ["Annual Crop Land", "Forest", "Herbaceous Vegetation Land", "Highway or Road", "Industrial Buildings",
           "Pasture Land", "Permanent Crop Land", "Residential Buildings", "River", "Sea or Lake"]


def eurosat_root(root: Path, test: int = 1) -> Path:
    """A miniature CoOp EuroSAT: split_zhou JSON, 2 train, 1 val, `test` test 8x8 PNG per class. CuPL has no
    EuroSAT file, so the paper config's descriptions (if_missing: none) give it no description bank. Each class
    has its own colour (red and blue move 25 levels per class) under seeded per-pixel noise (±60 levels), so
    a probe on a random ViT's features tells the classes apart imperfectly: its accuracy depends on its C."""
    folder = root / "eurosat"
    split = {}
    for i, (s, n) in enumerate((("train", 2), ("val", 1), ("test", test))):
        split[s] = [[f"c{label}/{s}{k}.png", label, c] for label, c in enumerate(EUROSAT) for k in range(n)]
        for k, (rel, label, _) in enumerate(split[s]):
            path = folder / "2750" / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            noise = np.random.default_rng([label, i, k]).uniform(-60, 60, (8, 8, 3))
            pixels = np.clip(np.array([25 * label, 64, 255 - 25 * label]) + noise, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(path)
    (folder / "split_zhou_EuroSAT.json").write_text(json.dumps(split))
    return root


def random_checkpoint(path: Path) -> Path:
    """A small random ViT CLIP (the project's 32-px config, seed 1: not the pipeline's tiny CLIP) as safetensors."""
    from promptlab.clip.model import build_untrained
    from promptlab.clip.pretrain import save_checkpoint

    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(build_untrained("promptlab-tiny", seed=1), path)
    return path
