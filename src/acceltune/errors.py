"""The one exception type that reaches the user as a one-line message and exit code 2."""


class UserError(Exception):
    """Bad input or an impossible request: the message names the problem and the fix."""
