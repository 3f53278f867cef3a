"""`python -m specd.daemon.cli`: the `specd` command."""

from .main import main

main()
