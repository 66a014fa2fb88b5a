"""``python -m hwfleet`` runs the command line."""

from hwfleet.cli.main import main

main()
