"""The one exception type that reaches the user as a one-line message and exit code 2."""


USER_ERROR_PREFIX = "acceltune: error: "
"""How the CLI prints a UserError; the distributed launcher finds its children's errors by it."""


class UserError(Exception):
    """Bad input or an impossible request: the message names the problem and the fix."""
