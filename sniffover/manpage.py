"""sniffover(8), generated from the argument parser: the options and subcommands, and their
help text, are the ones ``--help`` shows, so the man page cannot drift from the program.

``sniffover manpage > /usr/local/share/man/man8/sniffover.8`` (install.sh does it).
"""

from __future__ import annotations

import argparse
import datetime

from . import __version__

SEE_ALSO = "conntrack(8), conntrackd(8), keepalived(8), nft(8), systemd.service(5)"
FILES = (
    ("/etc/sniffover/sniffover.toml", "the agent's options (every long option, '-' or '_')"),
    ("/etc/sniffover/key", "the pre-shared key of serve and --prime-from (0600)"),
    ("/run/sniffover/", "the control socket, one per network namespace"),
    (
        "/opt/sniffover/",
        "the installed venv (install.sh); the command is /usr/local/sbin/sniffover",
    ),
)


def _roff(text: str) -> str:
    """Escape text for roff: backslashes, and a leading dot or quote on a line."""
    text = text.replace("\\", "\\e")
    return "\n".join("\\&" + ln if ln[:1] in (".", "'") else ln for ln in text.splitlines())


def _usage(parser: argparse.ArgumentParser) -> str:
    """The usage line, filled by roff instead of argparse's column layout."""
    words = parser.format_usage().removeprefix("usage: ").split()
    return "\\fB" + words[0] + "\\fR " + _roff(" ".join(words[1:]))


def _options(parser: argparse.ArgumentParser) -> list[str]:
    out: list[str] = []
    for action in parser._actions:  # argparse keeps no public list of them
        if action.help == argparse.SUPPRESS or isinstance(action, argparse._SubParsersAction):
            continue
        if action.option_strings:
            meta = ""
            if action.nargs != 0:
                meta = " " + str(action.metavar or action.dest.upper())
            names = ", ".join(f"\\fB{o}\\fR{_roff(meta)}" for o in action.option_strings)
        else:
            names = f"\\fI{action.metavar or action.dest}\\fR"
        help_text = (action.help or "") % {"default": action.default, "prog": parser.prog}
        out += [".TP", names, _roff(help_text)]
    return out


def render(parser: argparse.ArgumentParser) -> str:
    date = datetime.date.today().isoformat()
    lines = [
        f'.TH SNIFFOVER 8 "{date}" "sniffover {__version__}" "System Administration"',
        ".SH NAME",
        "sniffover \\- sniffing failover agent for Linux stateful firewalls",
        ".SH SYNOPSIS",
        _usage(parser),
        ".SH DESCRIPTION",
        _roff(parser.description or ""),
        ".SH OPTIONS",
        *_options(parser),
    ]
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if subs:
        lines.append(".SH COMMANDS")
        for name, sub in subs[0].choices.items():
            lines += [
                f".SS {name}",
                _usage(sub),
                ".PP",
                _roff(sub.description or ""),
                *_options(sub),
            ]
    if parser.epilog:
        lines += [".SH EXAMPLES", ".nf", _roff(parser.epilog), ".fi"]
    lines.append(".SH FILES")
    for path, what in FILES:
        lines += [".TP", f"\\fI{path}\\fR", _roff(what)]
    lines += [".SH SEE ALSO", SEE_ALSO]
    return "\n".join(lines) + "\n"


def cmd_manpage(args: argparse.Namespace) -> int:
    from .cli import build_parser

    print(render(build_parser()), end="")
    return 0
