"""The one exception type users see: a message that says what is wrong and how to fix it."""


class CifarlabError(Exception):
    """A user-facing error. The CLI prints its message on one line and exits non-zero."""
