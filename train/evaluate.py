"""``python -m train.evaluate --workdir runs/lenet5 [--checkpoint best|latest|STEP] [--split test]``:
restore a checkpoint (no config file needed) and report loss, top-1, top-5, per-class accuracy and a
confusion-matrix PNG. The library function is ``train.evaluate`` (``train/evaluation.py``)."""
import sys

from train.evaluation import main

if __name__ == "__main__":
    sys.exit(main())
