"""Stage `code`: for each stage script, the promptlab files it loads and the data files they read, with their
sha256 (promptlab/imports.py): <out>/<script>.json, and for the run stage one file per method of `methods`,
<out>/run/<method>.json (stages/run.py's files plus the method's folder and what it imports). Every stage
depends on its script and its record instead of listing library files: editing CoOp changes the records of
coop and the methods built on it (kgcoop, cocoop, ...), so only their runs re-run, and a record changes
exactly when a file its stage loads does. DVC cannot give each item of a matrix its own dependency list; the
records derive it from the imports (docs/pipeline.md "Code dependencies")."""

import argparse
from pathlib import Path

from promptlab.cli import run
from promptlab.config import load_params
from promptlab.imports import ROOT, code_record, run_code_record
from promptlab.io import atomic_dir, write_json

NOT_RECORDED = ("code.py", "run.py")  # this stage depends on all of promptlab/; run gets one record per method


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True, help="directory for <script>.json and run/<method>.json")
    args = ap.parse_args()
    p = load_params()
    with atomic_dir(args.out) as tmp:
        for script in sorted((ROOT / "stages").glob("*.py")):
            if script.name not in NOT_RECORDED:
                files = code_record([script])
                write_json(Path(tmp) / f"{script.stem}.json", {"stage": script.stem, "files": files})
                print(f"code {script.stem}: {len(files)} files")
        (Path(tmp) / "run").mkdir()
        for name in p.methods:
            files = run_code_record(ROOT / "promptlab" / "methods" / name)
            write_json(Path(tmp) / "run" / f"{name}.json", {"stage": "run", "method": name, "files": files})
            print(f"code run@{name}: {len(files)} files")


if __name__ == "__main__":
    run(main)
