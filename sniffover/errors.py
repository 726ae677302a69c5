"""Exit codes and the one-line error every user-caused failure ends in."""

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2


class CliError(Exception):
    """An error to report as one line on stderr, with exit status ``code`` (1)."""

    code = EXIT_ERROR


class UsageError(CliError):
    """A bad option or option value: one line on stderr, exit status 2."""

    code = EXIT_USAGE


class NetlinkError(OSError):
    """A refused ctnetlink request (errno from the kernel's NLMSG_ERROR).

    Defined here, not in ``ctnetlink`` (which re-exports it): that module is compiled with
    mypyc, which cannot compile a subclass of ``OSError``."""


class PrimeError(CliError):
    """Priming failed; one line saying what and why."""
