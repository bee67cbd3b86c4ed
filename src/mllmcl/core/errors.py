"""Errors a user can cause. The CLI prints their message on one line (no traceback) and exits with status 2."""


class UserError(Exception):
    """Bad input from the user: an unknown name, a missing file, an undecodable image, a malformed row.
    The message must name the offending file, row or key, and fit on one line."""


def one_line(text: str, limit: int = 2000) -> str:
    """`text` on a single line (line breaks become spaces) and at most `limit` characters: what the CLI
    prints after `mllmcl: error: `. Long messages (a row quoted back, a path of junk) are cut with `…`."""
    flat = " ".join(part.strip() for part in str(text).splitlines() if part.strip())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
