"""`python -m o11n` runs the command-line interface."""

from o11n.cli.main import main

main()
