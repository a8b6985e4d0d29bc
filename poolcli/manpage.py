"""The ``poolcli(1)`` man page, generated from the Click commands so that it says what ``--help`` says.

``python -m poolcli.manpage > docs/poolcli.1`` writes it; ``tests/test_docs.py`` checks that the
file in the repository is what this prints.  The SYNOPSIS is made from the commands and the EXIT
STATUS from ``exits``.  May import: Click, ``cli`` and ``exits`` (no NumPy, Pillow, Rich).

>>> page = render()
>>> page.startswith('.TH POOLCLI 1')
True
>>> '\\\\-\\\\-kernel' in page
True
>>> print(synopsis())
poolcli max|avg -k N|H,W [OPTIONS] INPUT...
poolcli pyramid max|avg -o PATH [OPTIONS] INPUT
poolcli explain max|avg -k N|H,W [OPTIONS] MATRIX
poolcli --version
"""

from __future__ import annotations

import inspect
import signal

import click

from poolcli.cli import ENV, EPILOG_TOP, cli
from poolcli.exits import STOP_SIGNALS, ExitCode, Interrupted, exit_code
from poolcli.version import __version__

# What each exit code means (tests/test_manpage.py: one for every ExitCode).
EXIT_MEANINGS = {
    ExitCode.OK: "every input was pooled (or help or the version was printed)",
    ExitCode.FAILED: "an input failed; one line on stderr names the file and the cause (a folder run "
                     "goes on with the other files)",
    ExitCode.USAGE: "a usage error (a bad option or combination), found before any file is read or written",
}
SIGNAL_CAUSES = {signal.SIGINT: "interrupted by Ctrl-C (SIGINT)"}


def escape(text: str) -> str:
    """Text as troff reads it literally: backslashes, hyphens (so they are not broken), leading dots."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join(("\\&" + line) if line.startswith((".", "'")) else line for line in text.splitlines())


def _paragraphs(text: str) -> list[str]:
    """Click help text as paragraphs; ``\\b`` blocks (examples) keep their lines."""
    out = []
    for block in inspect.cleandoc(text).split("\n\n"):
        if block.startswith("\b"):
            out.append(".nf\n" + escape(block.lstrip("\b\n")) + "\n.fi")
        else:
            out.append(escape(" ".join(block.split())))
    return out


def _root_context() -> click.Context:
    # Its settings (-h as well as --help) reach every command's context: Click keeps the first
    # help option it makes for a command.
    return click.Context(cli, info_name="poolcli", **cli.context_settings)


def _commands() -> list[tuple[str, click.Command, click.Context]]:
    """Every leaf command with a context for its help records, in the order of ``poolcli --help``."""
    root = _root_context()
    found: list[tuple[str, click.Command, click.Context]] = []

    def visit(group: click.Group, parent: click.Context, prefix: str) -> None:
        for name in group.list_commands(parent):
            command = group.get_command(parent, name)
            assert command is not None
            ctx = click.Context(command, info_name=name, parent=parent, **command.context_settings)
            if isinstance(command, click.Group):
                visit(command, ctx, f"{prefix} {name}")
            else:
                found.append((f"{prefix} {name}", command, ctx))

    visit(cli, root, "poolcli")
    return found


def synopsis() -> str:
    """One line per group of commands that take the same arguments (``max|avg``), in the order they
    are defined, with their required options; then ``--version``."""
    lines: list[str] = []

    def visit(group: click.Group, parent: click.Context, prefix: str) -> None:
        leaves: dict[str, list[str]] = {}  # usage after the names -> the names, in order
        for name, command in group.commands.items():
            ctx = click.Context(command, info_name=name, parent=parent, **command.context_settings)
            if isinstance(command, click.Group):
                visit(command, ctx, f"{prefix} {name}")
                continue
            required = [f"{param.opts[0]} {param.metavar or param.type.name.upper()}".rstrip()
                        for param in command.get_params(ctx) if isinstance(param, click.Option) and param.required]
            leaves.setdefault(" ".join([*required, *command.collect_usage_pieces(ctx)]), []).append(name)
        for usage, names in leaves.items():
            lines.append(f"{prefix} {'|'.join(names)} {usage}")

    visit(cli, _root_context(), "poolcli")
    order = {name: n for n, name in enumerate(cli.commands)}  # nested groups after their parent's commands

    def rank(line: str) -> int:
        return order.get(line.split()[1].split("|")[0], 0)

    return "\n".join([*sorted(lines, key=rank), "poolcli --version"])


def exit_status() -> list[str]:
    """The EXIT STATUS section's entries: every :class:`~poolcli.exits.ExitCode`, and 128 + the
    number of each signal that stops a run."""
    entries = []
    for code, meaning in EXIT_MEANINGS.items():
        entries += [".TP", f"\\fB{int(code)}\\fR", escape(meaning)]
    for signum in STOP_SIGNALS:
        cause = SIGNAL_CAUSES.get(signum, f"stopped by {signal.Signals(signum).name}")
        entries += [".TP", f"\\fB{exit_code(Interrupted(signum))}\\fR",
                    escape(f"{cause}; temporary files are removed and workers stopped, finished outputs stay")]
    return entries


def render() -> str:
    """The whole man page (troff ``man`` macros)."""
    lines = [
        f'.TH POOLCLI 1 "" "poolcli {__version__}" "User Commands"',
        ".SH NAME",
        "poolcli \\- torch\\-exact max and average pooling of images and arrays",
        ".SH SYNOPSIS",
        ".nf",
        escape(synopsis()),
        ".fi",
        ".SH DESCRIPTION",
    ]
    for paragraph in _paragraphs(cli.help or ""):
        lines += [paragraph, ".PP"]
    lines.pop()
    lines.append(".SH COMMANDS")
    for path, command, ctx in _commands():
        usage = " ".join(command.collect_usage_pieces(ctx))
        lines += [f".SS {escape(path)}", f"\\fB{escape(path)}\\fR {escape(usage)}", ".PP"]
        for paragraph in _paragraphs(command.help or ""):
            lines += [paragraph, ".PP"]
        shown_section = None
        for param in command.get_params(ctx):
            record = param.get_help_record(ctx) if isinstance(param, click.Option) else None
            if record is None:
                continue
            section = getattr(param, "help_section", "Other options")
            if section != shown_section:
                lines += [".PP", f"\\fI{escape(section)}\\fR"]
                shown_section = section
            names, help_text = record
            lines += [".TP", f"\\fB{escape(names)}\\fR", escape(help_text)]
        if command.epilog:
            lines += [".PP", *_paragraphs(command.epilog)]
    lines += [".SH ENVIRONMENT"]
    for name, variable in ENV.items():
        option = "--" + name.replace("_", "-")
        lines += [".TP", f"\\fB{variable}\\fR", escape(f"The default of {option} (an option given wins).")]
    lines += [
        ".TP", "\\fBNO_COLOR\\fR", "No colour in the reports.",
        ".SH EXIT STATUS",
        *exit_status(),
        ".SH EXAMPLES",
        *_paragraphs(EPILOG_TOP.split("\n\n")[0]),
        ".SH SEE ALSO",
        "The README of the project: https://github.com/poolcli/poolcli#readme",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render(), end="")
