"""``python -m flowledger`` runs the command line."""

from flowledger.cli import main

main()
