"""Shared entry for stage scripts: user errors become one line on stderr and exit code 2."""

from __future__ import annotations

import sys
from typing import Callable

from promptlab.errors import UserError


def run(main: Callable[[], None]) -> None:
    try:
        main()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def check_model_early(params) -> None:
    """The model params checked at the world and pretrain stages, the first a fresh `dvc repro` runs (both
    have no dependencies), so a model typo stops the pipeline before shards and features spend minutes; the
    stages that load the model check again (a changed model.* re-runs only those)."""
    from promptlab.clip.model import check_model

    m = params.model
    check_model(m.name, m.pretrained, m.device, check_file=False)
