"""The one exception type that reaches the user as a one-line message."""


class SotError(Exception):
    """A problem with the user's input or environment, reported as one line (no traceback)."""
