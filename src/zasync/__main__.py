"""``python -m zasync``: the same as the ``zasync`` command."""

from zasync.cli import main

main()
