"""`python -m expc`: the command line."""

from expc.cli import run

run()
