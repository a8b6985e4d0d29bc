"""The ``poolcli`` command line (the only module that uses Click).

Heavy modules (NumPy, Pillow, Rich) are imported inside the commands, so that ``--help`` and
``--version`` start fast.
"""

from __future__ import annotations

import click

from poolcli import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="poolcli")
def main() -> None:
    """Torch-exact max and average pooling of images and arrays."""
