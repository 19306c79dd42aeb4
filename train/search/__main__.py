"""``python -m train.search``: see ``train/search/cli.py``."""
from train.search import cli

if __name__ == "__main__":
    cli.main()
