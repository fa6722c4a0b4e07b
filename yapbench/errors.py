"""User errors: bad input that gets one clear line and exit code 2, never a traceback."""


class UserError(Exception):
    """Something the user gave (a file, a host, an option) is unusable; the message names it and says why."""

    exit_code = 2
