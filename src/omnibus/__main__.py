"""``python -m omnibus`` is the ``omnibus`` command."""

from omnibus.cli import main

main()
