"""`python -m unlearn_cli …` is the same as the `unlearn` console script."""

from unlearn_cli.cli import main

if __name__ == "__main__":
    main()
