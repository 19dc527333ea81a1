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

