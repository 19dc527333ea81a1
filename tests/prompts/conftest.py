"""Helpers for the prompts tests: run a stage script's main() in-process (torch is already imported)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def run_stage(monkeypatch):
    """run_stage("descriptions", [args...]): stages/<name>.py as `python stages/<name>.py args` would, in the
    current directory; a UserError exits 2 with one line on stderr."""

    def run(name: str, args: list[str]) -> None:
        spec = importlib.util.spec_from_file_location(f"stage_{name}", REPO / "stages" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        monkeypatch.setattr(sys, "argv", [f"{name}.py", *args])
        with torch.enable_grad():  # a stage turns autograd off for its process: keep that inside the call
            module.run(module.main)

    return run
