"""The one exception type a user sees as a clear one-line message (exit code 2)."""


class FreezetuneError(Exception):
    """Bad input or an impossible request: the message says what is wrong and how to fix it."""
