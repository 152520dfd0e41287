"""Errors a user can act on. The CLI prints them as one line, never as a traceback."""


class WardrobeError(Exception):
    """Bad input or an impossible request, with a message that names the file and the problem."""
