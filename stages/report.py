"""Stage `report`: per-run metrics -> metrics/summary.json (the file `dvc metrics` reads), tables (markdown + CSV),
plot data, PNG figures and the results page (with the published numbers beside ours under the paper protocol)."""

import argparse
from pathlib import Path

from promptlab.cli import run
from promptlab.config import load_params
from promptlab.io import atomic_dir, atomic_file, write_json
from promptlab.report import (environment_markdown, environment_summary, headline_markdown, load_references,
                              load_runs, markdown_table, report_frames, summarize, with_pm, write_tables)
from promptlab.report_figures import load_curves, results_page, write_figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", required=True, help="directory of per-run metrics JSON")
    ap.add_argument("--curves", required=True, help="directory of per-run DVCLive training curves")
    ap.add_argument("--summary", required=True)
    ap.add_argument("--tables", required=True, help="directory for markdown/CSV tables")
    ap.add_argument("--plots", required=True, help="directory for plot data (CSV)")
    ap.add_argument("--figures", required=True, help="directory for PNG figures")
    ap.add_argument("--page", required=True, help="the results page (markdown)")
    args = ap.parse_args()
    params = load_params()  # every stage validates params.yaml first
    runs = load_runs(args.runs)
    summary = summarize(runs)
    environment = environment_summary(runs)  # beside the protocol keys: dvc metrics diff shows a machine change
    write_json(args.summary, {**summary, "environment": environment})
    frames = report_frames(summary, runs)
    write_tables(summary, frames, args.tables, args.plots)
    with atomic_dir(args.figures) as tmp:
        figures = write_figures(frames, load_curves(args.curves), tmp)
    figures = [(section, title, Path(args.figures) / name, note) for section, title, name, note in figures]
    page = results_page(summary, frames, runs, params.model_dump(), figures, args.page, load_references())
    page += "\n" + environment_markdown(environment, runs)
    with atomic_file(args.page) as tmp:
        tmp.write_text(page)
    print(headline_markdown(summary), end="")  # the page's headline table; the rest is in metrics/report.md


if __name__ == "__main__":
    run(main)
