"""dvc.yaml's code dependencies follow the imports: each stage depends on its script and on its record from stage
`code` (data/code/<script>.json, run@<method>: data/code/run/<method>.json), never on library files one by one;
a record is every promptlab module the script loads (promptlab/imports.py: static, function-local imports
included) plus the data files those modules name, and run@<method>'s adds its method folder and what that
imports, never the other methods."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from promptlab.imports import closure, code_record, data_files, imported_modules, run_code_record
from promptlab.methods import methods

REPO = Path(__file__).resolve().parents[1]
STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def _script(stage: dict) -> Path:
    return REPO / re.search(r"python (stages/\S+\.py)", stage["cmd"]).group(1)


def _record_path(name: str) -> str:
    return "data/code/run/${item.method}.json" if name == "run" else f"data/code/{_script(STAGES[name]).stem}.json"


@pytest.mark.parametrize("name", [n for n in STAGES if n != "code"])
def test_each_stage_depends_on_its_script_and_its_code_record_only(name):
    deps = [d for d in STAGES[name]["deps"] if isinstance(d, str)]
    assert str(_script(STAGES[name]).relative_to(REPO)) in deps and _record_path(name) in deps
    assert [d for d in deps if d.startswith(("promptlab", "stages/", "data/code"))
            and d not in (str(_script(STAGES[name]).relative_to(REPO)), _record_path(name))] == []


def test_the_code_stage_writes_every_record_the_stages_depend_on(tmp_path):
    """stages/code.py itself, on the default params: one record per script that a stage runs and one per
    method; each record is code_record's (run: run_code_record's), with the files' real sha256."""
    subprocess.run([sys.executable, "stages/code.py", "--out", str(tmp_path / "code")], cwd=REPO, check=True,
                   capture_output=True)
    wanted = {_record_path(n) for n in STAGES if n not in ("code", "run")}
    methods_listed = yaml.safe_load((REPO / "params.yaml").read_text())["methods"]
    wanted |= {f"data/code/run/{m}.json" for m in methods_listed}
    written = {f"data/code/{p.relative_to(tmp_path / 'code')}" for p in (tmp_path / "code").rglob("*.json")}
    assert written == wanted
    world = json.loads((tmp_path / "code/world.json").read_text())["files"]
    assert world == code_record([REPO / "stages/world.py"])
    kgcoop = json.loads((tmp_path / "code/run/kgcoop.json").read_text())["files"]
    assert kgcoop == run_code_record(REPO / "promptlab/methods/kgcoop")
    assert all(hashlib.sha256((REPO / f).read_bytes()).hexdigest() == h for f, h in kgcoop.items())


def test_records_hold_the_modules_a_script_loads_and_their_data_files():
    """Known facts of the code: run@kgcoop loads CoOp's files and KgCoOp's templates.yaml, never zeroshot's;
    the features stage loads the extractor; the report reads the reference numbers; every record that loads
    clip/model.py has the model configs, and every one that loads data/registry.py the datasets table."""
    kgcoop = run_code_record(REPO / "promptlab/methods/kgcoop")
    assert {"promptlab/methods/coop/method.py", "promptlab/methods/kgcoop/templates.yaml"} <= set(kgcoop)
    assert not any(f.startswith("promptlab/methods/zeroshot") for f in kgcoop)
    assert "promptlab/clip/extract.py" in code_record([REPO / "stages/features.py"])
    assert "promptlab/reference_numbers.yaml" in code_record([REPO / "stages/report.py"])
    assert "promptlab/clip/pretrain.py" not in code_record([REPO / "stages/world.py"])
    for script in sorted((REPO / "stages").glob("*.py")):
        record = code_record([script])
        assert not any(f.startswith("stages/") for f in record)  # the script is its own dependency
        if "promptlab/clip/model.py" in record:
            assert "promptlab/clip/model_configs/promptlab-tiny.json" in record, script.name
        if "promptlab/data/registry.py" in record:
            assert "promptlab/data/datasets.yaml" in record, script.name


def test_methods_import_exactly_what_their_code_says():
    """The derived run records against the source: kgcoop subclasses CoOp (its files appear), zeroshot does
    not; every method's record holds the shared base."""
    for m in methods():
        text = "\n".join(p.read_text() for p in sorted((REPO / "promptlab/methods" / m).glob("*.py")))
        builds_on = set(re.findall(r"promptlab\.methods\.(\w+)\.", text)) - {m}
        record = run_code_record(REPO / "promptlab/methods" / m)
        others = {Path(f).parts[2] for f in record
                  if f.startswith("promptlab/methods/") and len(Path(f).parts) > 3} - {m}
        assert others == builds_on, m
        assert "promptlab/methods/base.py" in record


def test_editing_one_method_changes_only_its_importers_records(tmp_path):
    """Copy the package and the stage scripts, edit CoOp's code: the run records change for coop and the
    methods that import it only; the world's record does not change."""
    shutil.copytree(REPO / "promptlab", tmp_path / "promptlab", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "stages", tmp_path / "stages", ignore=shutil.ignore_patterns("__pycache__"))
    folder = tmp_path / "promptlab/methods"
    records = lambda: ({m: run_code_record(folder / m, tmp_path) for m in methods()},  # noqa: E731
                       code_record([tmp_path / "stages/world.py"], tmp_path))
    before, world_before = records()
    (folder / "coop/method.py").write_text((folder / "coop/method.py").read_text() + "\n# edited\n")
    after, world_after = records()
    changed = {m for m in methods() if before[m] != after[m]}
    importers = {m for m in methods() if "promptlab.methods.coop" in
                 "".join(p.read_text() for p in (folder / m).glob("*.py")) and m != "coop"}
    assert changed == importers | {"coop"} and {"kgcoop", "cocoop", "prograd"} <= changed
    assert "zeroshot" not in changed and world_before == world_after


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


def test_data_files_are_the_siblings_a_module_names(tmp_path):
    """A string constant naming a sibling file or non-package folder is a data file (a folder brings its files);
    a docstring, a package, a Python file and a name that is no sibling are not."""
    _write(tmp_path, "promptlab/table.yaml", "a: 1\n")
    _write(tmp_path, "promptlab/configs/x.json", "{}\n")
    _write(tmp_path, "promptlab/configs/__pycache__/x.pyc", "")
    _write(tmp_path, "promptlab/pkg/__init__.py", "")
    _write(tmp_path, "promptlab/other.py", "")
    _write(tmp_path, "promptlab/unnamed.yaml", "")
    module = _write(tmp_path, "promptlab/m.py", '''\
        """Reads table.yaml."""
        from pathlib import Path
        T = Path(__file__).with_name("table.yaml")
        C = Path(__file__).with_name("configs")
        names = ["pkg", "other.py", "missing.yaml", "table.yaml: bad row"]
        ''')
    assert data_files(module) == {tmp_path / "promptlab/table.yaml", tmp_path / "promptlab/configs/x.json"}
    got = code_record([_write(tmp_path, "stages/s.py", "import promptlab.m\n")], tmp_path)
    assert sorted(got) == ["promptlab/configs/x.json", "promptlab/m.py", "promptlab/table.yaml"]


def test_features_params_are_what_decides_the_features():
    """Every features key is a params dependency of the features stages except the two that only say how fast
    (byte-identical outputs); the CLIP stages track the weights, not the device."""
    from promptlab.config import FeatureParams

    declared = set(STAGES["features"]["params"])
    assert declared == {"model.name", "model.pretrained"} | {f"features.{k}" for k in FeatureParams.model_fields
                                                             if k not in ("num_workers", "nproc")}
    for name in ("features", "prompts", "run"):
        assert "model" not in STAGES[name]["params"] and "model.device" not in STAGES[name]["params"]
