"""The one exception type that the command line turns into a one-line error and exit code 1."""


class UserError(Exception):
    """Bad input from the user: the message names the problem and the fix, and is shown as is."""
