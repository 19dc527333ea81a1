"""Errors a user can fix (bad params, bad data). Stages print them as one line and exit non-zero."""


class UserError(Exception):
    """An error caused by the user's params or data; its message names the culprit."""
