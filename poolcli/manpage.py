"""The ``poolcli(1)`` man page, generated from the Click commands so that it says what ``--help`` says.

``python -m poolcli.manpage > docs/poolcli.1`` writes it; ``tests/test_docs.py`` checks that the
file in the repository is what this prints.  May import: Click and ``cli`` (no NumPy, Pillow, Rich).

>>> page = render()
>>> page.startswith('.TH POOLCLI 1')
True
>>> '\\\\-\\\\-kernel' in page
True
"""

from __future__ import annotations

import inspect

import click

from poolcli import __version__
from poolcli.cli import ENV, EPILOG_TOP, cli

# The commands in the order the page lists them: (words after "poolcli", command).
SYNOPSIS = "poolcli max|avg INPUT... -k N|H,W [OPTIONS]\npoolcli explain max|avg MATRIX -k N|H,W [OPTIONS]"


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


def _commands() -> list[tuple[str, click.Command, click.Context]]:
    """Every leaf command with a context for its help records, in the order of ``poolcli --help``."""
    root = click.Context(cli, info_name="poolcli", **cli.context_settings)  # -h as well as --help
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


def render() -> str:
    """The whole man page (troff ``man`` macros)."""
    lines = [
        f'.TH POOLCLI 1 "" "poolcli {__version__}" "User Commands"',
        ".SH NAME",
        "poolcli \\- torch\\-exact max and average pooling of images and arrays",
        ".SH SYNOPSIS",
        ".nf",
        escape(SYNOPSIS),
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
        "0: every input was pooled; 1: an input failed (one line names the file and the cause); "
        "2: a usage error; 130: interrupted.",
        ".SH EXAMPLES",
        *_paragraphs(EPILOG_TOP.split("\n\n")[0]),
        ".SH SEE ALSO",
        "The README of the project: https://github.com/poolcli/poolcli#readme",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render(), end="")
