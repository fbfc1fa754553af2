"""Errors and warnings that hyperadapt raises for its users."""


class HyperAdaptError(Exception):
    """A problem with the user's input: a recipe, a task, a path or a checkpoint.

    The command line prints the message alone (no traceback) and exits with status 2.
    Messages name the problem and how to fix it.
    """


class HyperAdaptWarning(UserWarning):
    """Something that works but is probably not what the user wanted."""
