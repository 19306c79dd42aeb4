"""Published weights: ``pth`` reads PyTorch ``.pth`` state_dicts without PyTorch."""
