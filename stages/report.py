"""Stage `report`: per-run metrics -> metrics/summary.json (the file `dvc metrics` reads), tables, plot data."""

import argparse
from pathlib import Path

from promptlab.cli import run
from promptlab.config import load_params
from promptlab.io import atomic_file, write_json
from promptlab.report import base2new_table, domain_shift_table, load_runs, markdown_table, summarize


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", required=True)
    ap.add_argument("--summary", required=True)
    ap.add_argument("--tables", required=True, help="directory for markdown/CSV tables")
    ap.add_argument("--plots", required=True, help="directory for plot data (CSV)")
    args = ap.parse_args()
    load_params()  # every stage validates params.yaml first, even one that reads no key
    summary = summarize(load_runs(args.runs))
    write_json(args.summary, summary)
    b2n, shift = base2new_table(summary), domain_shift_table(summary)
    for name, df in (("base2new", b2n), ("domain_shift", shift)):
        for directory, suffix, text in ((args.tables, "md", markdown_table(df)), (args.tables, "csv", None),
                                        (args.plots, "csv", None)):
            path = Path(directory) / f"{name}.{suffix}"
            with atomic_file(path) as tmp:
                tmp.write_text(text) if text is not None else df.write_csv(tmp)
    print(markdown_table(b2n.filter(b2n["dataset"] == "average")))


if __name__ == "__main__":
    run(main)
