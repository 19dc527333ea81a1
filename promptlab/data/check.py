"""`check-data`: which datasets under a CoOp-style data root are complete, what is missing, where to get it.

Per dataset the report is
    {"id", "folder", "status": "complete" | "incomplete" | "absent", "complete": bool,
     "missing": ["<what>: <path>", …],            required files/folders that do not exist
     "errors": ["<one line>", …],                  reader errors, class-count or test-coverage problems
     "missing_images": {"count": n, "first": [path relative to the image folder, …]},
     "classes": n | null, "expected_classes": n | null, "items": {"train": n, "val": n, "test": n},
     "hint": where CoOp's instructions say to get it}
Images are checked by comparing the names a split references with one listing per referenced folder (no
open, no decode, no stat per file). Folder readers (class_folders) list the files themselves, so nothing they
return can be missing; ImageNet's check costs one scandir per class folder.
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

from promptlab.data.coop_format import Item, class_count_problem, classnames, empty_classes
from promptlab.data.readers import read_items
from promptlab.data.registry import DATASETS, REAL_DATASETS, DatasetSpec
from promptlab.errors import UserError

SHOW_FIRST = 5
LISTING_READERS = {"class_folders"}  # their items come from directory listings: they exist by construction


def check_root(root: str | Path, ids: list[str] | None = None) -> dict:
    """Check `ids` (default: every real dataset and every registered data.custom_datasets one, plus generated
    ones whose folder is there).

    `failing` lists what makes the check fail: with `ids` given, any requested dataset not complete; without,
    any dataset that is there but incomplete (a dataset not installed at all is reported, not a failure)."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"data root not found: {root}")
    requested = list(ids) if ids else None
    ids = requested or default_ids(root)
    reports = {i: check_dataset(DATASETS[i], root) for i in ids}
    failing = [i for i, r in reports.items() if not r["complete"] and (requested or r["status"] != "absent")]
    return {"root": str(root), "requested": requested, "ok": not failing, "failing": failing, "datasets": reports}


def default_ids(root: Path) -> list[str]:
    generated = [k for k, s in DATASETS.items() if s.generated and s.dataset_dir(root).is_dir()]
    return generated + REAL_DATASETS + [k for k, s in DATASETS.items() if s.custom]


def check_dataset(spec: DatasetSpec, root: str | Path) -> dict:
    """One dataset's report (shape in the module docstring)."""
    report = {"id": spec.id, "folder": str(spec.dataset_dir(root)), "status": "incomplete", "complete": False,
              "missing": [], "errors": [], "missing_images": {"count": 0, "first": []}, "classes": None,
              "expected_classes": spec.n_classes, "items": {}, "hint": spec.hint}
    report["missing"] = [f"{what}: {path}" for what, path in spec.required(root) if not path.exists()]
    if not spec.dataset_dir(root).is_dir():
        report.update(status="absent", missing=report["missing"][:1])
        return report
    if report["missing"]:
        return report
    try:
        splits = read_items(spec, root)
    except UserError as exc:
        report["errors"].append(str(exc))
        return report
    report["items"] = {s: len(v) for s, v in splits.items()}
    report["errors"] += class_problems(spec, splits, report)
    if spec.reader not in LISTING_READERS:
        count, first = missing_images(spec.image_dir(root), (it.path for v in splits.values() for it in v))
        report["missing_images"] = {"count": count, "first": first}
    if not report["errors"] and not report["missing_images"]["count"]:
        report.update(status="complete", complete=True)
    return report


def class_problems(spec: DatasetSpec, splits: dict[str, list[Item]], report: dict) -> list[str]:
    """Sets report["classes"]; returns problems: empty labels or one label with two names, a class count other
    than CoOp's, classes without test items (or without train items, unless the dataset is test-only)."""
    labels = {it.label for v in splits.values() for it in v}
    n = max(labels) + 1 if labels else 0
    report["classes"] = n
    problems, names = [], None
    try:
        names = classnames([it for v in splits.values() for it in v], spec.id)
    except UserError as exc:
        problems.append(str(exc))
    count = class_count_problem(spec, n)
    if count:
        problems.append(count)
    if names is not None:
        problems += empty_classes(spec, splits, names)
    return problems


def missing_images(image_dir: Path, paths) -> tuple[int, list[str]]:
    """(how many of `paths` do not exist under image_dir, the first few sorted). One listdir per folder."""
    by_dir: dict[str, set[str]] = defaultdict(set)
    for p in paths:
        folder, _, name = p.rpartition("/")
        by_dir[folder].add(name)
    missing: list[str] = []
    for folder, names in by_dir.items():
        try:
            present = set(os.listdir(image_dir / folder))
        except (FileNotFoundError, NotADirectoryError):
            present = set()
        missing += [f"{folder}/{n}" if folder else n for n in names - present]
    return len(missing), sorted(missing)[:SHOW_FIRST]


def format_report(result: dict) -> str:
    """Human output: one line per dataset, then indented details; a last line with the verdict."""
    lines = [f"data root: {result['root']}"]
    for r in result["datasets"].values():
        lines.append(_summary(r))
        lines += [f"    missing {m}" for m in r["missing"]]
        lines += [f"    error: {e}" for e in r["errors"]]
        mi = r["missing_images"]
        if mi["count"]:
            lines.append(f"    {mi['count']} images referenced by the split files do not exist, e.g. "
                         + ", ".join(mi["first"]))
        if not r["complete"]:
            lines.append(f"    get it: {r['hint']}")
    statuses = [r["status"] for r in result["datasets"].values()]
    tally = ", ".join(f"{statuses.count(s)} {s}" for s in ("complete", "incomplete", "absent"))
    verdict = "ok" if result["ok"] else f"not ok: {', '.join(result['failing'])} not complete"
    lines.append(f"{tally}: {verdict}")
    return "\n".join(lines)


def _summary(r: dict) -> str:
    counts = "  ".join(f"{s} {n}" for s, n in r["items"].items() if n)
    classes = f"{r['classes']} classes  {counts}" if r["classes"] is not None else ""
    return f"{r['id']:<17} {r['status']:<11} {classes}".rstrip()
