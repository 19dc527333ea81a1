"""`python -m promptlab <command>`: user commands outside the DVC stages.

    check-data --root DIR [--dataset ID ...] [--params FILE] [--json]
        Which datasets under a CoOp-style data root are complete, what is missing, where to get it. Exit 1 when
        a requested dataset (or, without --dataset, one that is present) is incomplete; 2 on a usage error.
        The datasets of --params' data.custom_datasets (default: ./params.yaml when there is one) are known
        ids too, and checked by default.
"""

from __future__ import annotations

import argparse
import json
import sys

from promptlab.cli import run


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    run(lambda: args.func(args))


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="promptlab", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check-data", help="check a CoOp-style data root before a long run")
    check.add_argument("--root", required=True, help="the folder data.root points at (CoOp's $DATA)")
    check.add_argument("--dataset", action="append", metavar="ID",
                       help="dataset id to check (repeatable; default: every real and custom dataset)")
    check.add_argument("--params", help="params file declaring data.custom_datasets (default: ./params.yaml "
                                        "if present)")
    check.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    check.set_defaults(func=_check_data)
    return ap


def _check_data(args) -> None:
    from pathlib import Path

    from promptlab.config import load_params
    from promptlab.data.check import check_root, format_report
    from promptlab.data.registry import dataset_spec

    if args.params or Path("params.yaml").is_file():
        load_params(args.params or "params.yaml")  # registers its data.custom_datasets
    for i in args.dataset or []:
        dataset_spec(i)  # an unknown id: one line listing the known ones
    result = check_root(args.root, args.dataset)
    print(json.dumps(result, indent=2) if args.json else format_report(result))
    if not result["ok"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
