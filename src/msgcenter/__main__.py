"""``python -m msgcenter`` is the ``msgcenter`` command."""

from msgcenter.cli import main

main()
