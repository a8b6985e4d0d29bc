"""``python -m poolcli``: the same as the ``poolcli`` command."""

from poolcli.cli import main

if __name__ == "__main__":
    main()
