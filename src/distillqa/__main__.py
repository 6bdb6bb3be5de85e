"""`python -m distillqa`: the same command as `distillqa`."""

from distillqa.cli import main

main()
