"""Errors a user can cause. The CLI prints their message (no traceback) and exits with status 2."""


class UserError(Exception):
    """Bad input from the user: an unknown name, a missing file, an undecodable image, a malformed row.
    The message must name the offending file, row or key."""
