"""dvc.yaml's code dependencies follow the imports: each stage's deps cover every promptlab module its script
loads (promptlab/imports.py: static, function-local imports included), list no Python file it does not load,
and run@<method> depends on its own method folder plus what that folder imports (stage method_code), never on
the other methods."""

from __future__ import annotations

import re
import shutil
import textwrap
from pathlib import Path

import pytest
import yaml

from promptlab.imports import closure, imported_modules, outside_imports
from promptlab.methods import methods

REPO = Path(__file__).resolve().parents[1]
STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def _script(stage: dict) -> Path:
    return REPO / re.search(r"python (stages/\S+\.py)", stage["cmd"]).group(1)


def _deps(stage: dict, method: str = "") -> list[str]:
    return [d.replace("${item.method}", method) for d in stage["deps"] if isinstance(d, str)]


def _covered(path: str, deps: list[str]) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in deps)


def _rel(paths) -> set[str]:
    return {str(p.relative_to(REPO)) for p in paths}


@pytest.mark.parametrize("name", [n for n in STAGES if n != "run"])
def test_stage_deps_cover_its_imports(name):
    stage = STAGES[name]
    needed = _rel(closure([_script(stage)]))
    deps = _deps(stage)
    assert sorted(n for n in needed if not _covered(n, deps)) == []
    # no stale Python file: each .py dep is loaded (folders and data files are not checked here)
    assert sorted(d for d in deps if d.endswith(".py") and d not in needed) == []


@pytest.mark.parametrize("method", sorted(methods()))
def test_run_stage_deps_are_the_shared_code_plus_the_methods_own(method):
    run = STAGES["run"]
    shared = _deps(run, method)
    folder = f"promptlab/methods/{method}"
    derived = set(outside_imports(REPO / folder))  # the stage method_code's file for this method
    needed = _rel(closure([_script(run)])) | _rel(closure(sorted((REPO / folder).rglob("*.py"))))
    assert sorted(n for n in needed if not (_covered(n, shared) or n in derived)) == []
    # per method: no dependency on promptlab/methods as a whole or on another method's folder
    others = {f"promptlab/methods/{m}" for m in methods()} - {folder}
    assert "promptlab/methods" not in shared and not others & set(shared)
    assert "data/method_code/${item.method}.json" in run["deps"] and "${item.method}" in str(run["params"])


def test_methods_import_exactly_what_their_code_says():
    """The derived dependencies against the source: kgcoop subclasses CoOp (its files appear), zeroshot does not;
    every method folder imports the shared base."""
    for m in methods():
        text = "\n".join(p.read_text() for p in sorted((REPO / "promptlab/methods" / m).glob("*.py")))
        builds_on = set(re.findall(r"promptlab\.methods\.(\w+)\.", text)) - {m}
        imported = {Path(f).parts[2] for f in outside_imports(REPO / "promptlab/methods" / m)
                    if f.startswith("promptlab/methods/") and len(Path(f).parts) > 3}
        assert imported == builds_on, m
        assert "promptlab/methods/base.py" in outside_imports(REPO / "promptlab/methods" / m)
    assert "promptlab/methods/coop/method.py" in outside_imports(REPO / "promptlab/methods/kgcoop")


def test_editing_one_method_changes_only_its_importers(tmp_path):
    """Copy the package, edit CoOp's code: the method_code record changes for coop's importers only; the edited
    method's own change is seen by its folder dependency."""
    shutil.copytree(REPO / "promptlab", tmp_path / "promptlab", ignore=shutil.ignore_patterns("__pycache__"))
    folder = tmp_path / "promptlab/methods"
    before = {m: outside_imports(folder / m, tmp_path) for m in methods()}
    (folder / "coop/method.py").write_text((folder / "coop/method.py").read_text() + "\n# edited\n")
    after = {m: outside_imports(folder / m, tmp_path) for m in methods()}
    changed = {m for m in methods() if before[m] != after[m]}
    importers = {m for m in methods() if "promptlab.methods.coop" in
                 "".join(p.read_text() for p in (folder / m).glob("*.py")) and m != "coop"}
    assert changed == importers and {"kgcoop", "cocoop", "prograd"} <= changed and "zeroshot" not in changed


def _write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def test_import_walk_on_a_toy_package(tmp_path):
    """Every import form, against a hand-made package whose answer is known."""
    _write(tmp_path, "promptlab/__init__.py", "")  # empty: not a dependency
    _write(tmp_path, "promptlab/sub/__init__.py", "X = 1\n")  # code: runs on import, a dependency
    _write(tmp_path, "promptlab/sub/a.py", "from . import b\nimport os\n")
    _write(tmp_path, "promptlab/sub/b.py", "from promptlab.c import name\n")
    _write(tmp_path, "promptlab/c.py", "name = 1\n\ndef f():\n    from promptlab.lazy import g\n")
    _write(tmp_path, "promptlab/lazy.py", "import numpy\n")
    _write(tmp_path, "promptlab/unused.py", "")
    script = _write(tmp_path, "stages/s.py", "import promptlab.sub.a\n")
    got = {str(p.relative_to(tmp_path)) for p in closure([script], tmp_path)}
    assert got == {"stages/s.py", "promptlab/sub/__init__.py", "promptlab/sub/a.py", "promptlab/sub/b.py",
                   "promptlab/c.py", "promptlab/lazy.py"}
    assert imported_modules(tmp_path / "promptlab/c.py", tmp_path) == {"promptlab.lazy"}  # `name` is no module


def test_features_params_are_what_decides_the_features():
    """Every features key is a params dependency of the features stages except the two that only say how fast
    (byte-identical outputs); the CLIP stages track the weights, not the device."""
    from promptlab.config import FeatureParams

    declared = set(STAGES["features"]["params"])
    assert declared == {"model.name", "model.pretrained"} | {f"features.{k}" for k in FeatureParams.model_fields
                                                             if k not in ("num_workers", "nproc")}
    for name in ("features", "prompts", "run"):
        assert "model" not in STAGES[name]["params"] and "model.device" not in STAGES[name]["params"]
