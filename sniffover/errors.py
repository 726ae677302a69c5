"""Exit codes and the one-line error every user-caused failure ends in."""

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2


class CliError(Exception):
    """An error to report as one line on stderr, with exit status 1."""
