"""The docs stay true to the code and the committed results.

- The method pages under docs/methods/: for the three papers whose full texts we did not have, every params
  key of the method's block is in its "Our reading" table, every key the table names exists, and the
  defaults the table states are the schema's defaults.
- README's result tables are the committed metrics/tables, cell for cell.
- Every file or folder of the project that README, BENCHMARKS.md or docs/ names exists."""

from __future__ import annotations

import re
from fractions import Fraction
from pathlib import Path

import pytest
import yaml

from promptlab.methods import methods
from promptlab.methods.base_config import TrainConfig

METHOD_CONFIGS = {name: spec.config for name, spec in methods().items()}

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
TABLES = REPO / "metrics" / "tables"
SHARED = set(TrainConfig.model_fields) - {"epochs", "batch_size", "lr"}  # the loop's defaults: baselines.md


def cells(line: str) -> list[str]:
    """The stripped cells of one markdown table row."""
    return [c.strip() for c in line.strip().strip("|").split("|")]


def reading_rows(method: str) -> list[tuple[list[str], str]]:
    """(keys, default cell) of each row of the page's "Our reading" table that names keys."""
    text = (DOCS / "methods" / f"{method}.md").read_text()
    table = text.split("## Our reading", 1)[1]
    rows = []
    for line in table.splitlines():
        row = cells(line)
        if len(row) >= 3 and row[1].startswith("`"):
            rows.append((re.findall(r"`([a-z_0-9]+)`", row[1]), row[2]))
    return rows


def parse_default(text: str):
    text = re.sub(r"\(.*\)", "", text).strip().strip("`")  # "`dataset` (params.yaml: `clip80`)" -> dataset
    if re.fullmatch(r"\d+/\d+", text):
        return float(Fraction(text))
    return yaml.safe_load(text.replace('"', "'")) if text.startswith('"') else yaml.safe_load(text)


@pytest.mark.parametrize("method", ["dualview", "pbprompt", "aape"])
def test_every_reading_is_a_documented_params_key(method):
    fields = METHOD_CONFIGS[method].model_fields
    documented = {k for keys, _ in reading_rows(method) for k in keys}
    assert documented <= set(fields), f"docs/methods/{method}.md names keys the schema lacks"
    assert set(fields) - SHARED <= documented, f"docs/methods/{method}.md leaves keys out"


@pytest.mark.parametrize("method", ["dualview", "pbprompt", "aape"])
def test_the_stated_defaults_are_the_schemas(method):
    fields = METHOD_CONFIGS[method].model_fields
    for keys, cell in reading_rows(method):
        values = [parse_default(v) for v in cell.split(", ")] if len(keys) > 1 else [parse_default(cell)]
        assert len(values) == len(keys), (keys, cell)
        for key, value in zip(keys, values):
            assert fields[key].default == pytest.approx(value) if isinstance(value, float) else \
                fields[key].default == value, (method, key, cell)


def table_rows(text: str, header: str) -> dict[str, list[str]]:
    """{method: its cells after the method column} of the first markdown table in `text` under `header`."""
    lines = text.split(header + "\n", 1)[1].splitlines()[1:]  # skip the |---| line
    rows = {}
    for line in lines:
        if not line.startswith("|"):
            break
        method, *rest = cells(line)
        rows[method] = rest
    return rows


def test_readme_base2new_excerpt_is_the_committed_table():
    header = "| method | seeds | base | new | HM |"
    readme = table_rows((REPO / "README.md").read_text(), header)
    committed = table_rows((TABLES / "base2new.md").read_text().split("## Average", 1)[1], header)
    assert readme == committed


def test_readme_few_shot_table_is_the_committed_tables():
    """README's few-shot table: metrics/tables/few_shot.md (without its seeds column) plus the synthetic_shapes
    column of metrics/tables/cross_dataset.md."""
    shots = "| 1 shot | 2 shots | 4 shots | 8 shots | 16 shots |"
    readme = table_rows((REPO / "README.md").read_text(), "| method " + shots + " → synthetic_shapes |")
    few = table_rows((TABLES / "few_shot.md").read_text(), "| method | seeds " + shots)
    cross = table_rows((TABLES / "cross_dataset.md").read_text(),
                       "| method | seeds | synthetic (source) | synthetic_shapes |")
    assert readme == {m: row[1:] + [cross[m][2]] for m, row in few.items()}


PROJECT_PATH = re.compile(r"\b(?:promptlab|stages|tests|configs)/[A-Za-z0-9_./-]*[A-Za-z0-9_/]")


def test_every_project_path_the_docs_name_exists():
    """A file that moved (e.g. promptlab/protocols.py, split into runs.py, artifacts.py, runner.py) must take
    its mentions with it; patterns such as `promptlab/methods/<name>/` are skipped."""
    pages = [REPO / "README.md", REPO / "BENCHMARKS.md", *sorted(DOCS.rglob("*.md"))]
    texts = {page.relative_to(REPO).as_posix(): page.read_text() for page in pages}
    missing = {(name, m.group()) for name, text in texts.items() for m in PROJECT_PATH.finditer(text)
               if text[m.end():m.end() + 1] not in "<*" and not (REPO / m.group()).exists()}
    assert not missing
