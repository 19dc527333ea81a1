"""Assertion helpers shared by test modules (imported like dvc_helpers: tests/ is on sys.path)."""

from __future__ import annotations

import pytest

from promptlab.errors import UserError


def one_line_user_error(fn, *args, **kwargs) -> str:
    """Call fn, expect a UserError whose message is one line, and return that message."""
    with pytest.raises(UserError) as info:
        fn(*args, **kwargs)
    msg = str(info.value)
    assert "\n" not in msg
    return msg
