"""``python -m hwfleet.cli`` runs the command line (used by benchmarks and tests)."""

from hwfleet.cli.main import main

main()
