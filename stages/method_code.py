"""Stage `method_code`: for each method of `methods`, the promptlab files its folder (promptlab/methods/<name>/)
imports from outside itself, with their sha256, in <out>/<name>.json (promptlab/imports.py). run@<name> depends
on its folder and on this file: editing CoOp's code changes coop.json and the files of the methods built on CoOp
(kgcoop, cocoop, ...), so only their runs re-run. DVC cannot give each item of a matrix its own dependency
list; this derives it from the imports (docs/pipeline.md "Code dependencies")."""

import argparse
from pathlib import Path

from promptlab.cli import run
from promptlab.config import load_params
from promptlab.imports import ROOT, outside_imports
from promptlab.io import atomic_dir, write_json


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True, help="directory for <method>.json")
    args = ap.parse_args()
    p = load_params()
    with atomic_dir(args.out) as tmp:
        for name in p.methods:
            imports = outside_imports(ROOT / "promptlab" / "methods" / name)
            write_json(Path(tmp) / f"{name}.json", {"method": name, "imports": imports})
            print(f"method_code {name}: {len(imports)} files outside its folder")


if __name__ == "__main__":
    run(main)
