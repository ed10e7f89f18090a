"""`python -m sellix_lite` runs the command line."""

from .cli import main

main()
