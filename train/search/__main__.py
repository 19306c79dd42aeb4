"""``python -m train.search``: see ``train/search/cli.py``."""
import sys

from train.search import cli

if __name__ == "__main__":
    sys.exit(cli.main())
