"""The one exception type that scripts turn into a one-line message and exit status 2."""


class GanlabError(Exception):
    """A problem the user can fix: the message says what went wrong and how to fix it."""
