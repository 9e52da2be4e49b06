"""``python -m mlsd.cli ...``: the same command line as the ``mlsd`` script."""

from mlsd.cli import app

if __name__ == "__main__":
    app()
