"""``python -m train.evaluate --workdir runs/lenet5 [--checkpoint best|latest|STEP] [--split test]``:
restore a checkpoint (no config file needed) and report loss, top-1, top-5, per-class accuracy and a
confusion-matrix PNG. The library function is ``train.evaluate`` (``train/evaluation.py``).

``python -m train.evaluate --pretrained MODEL[:TAG] --config.data.name=...``: published weights on a
labelled set, top-1 / top-5 beside the catalogue's (``train/published.py``)."""
import sys


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if any(a == "--pretrained" or a.startswith("--pretrained=") for a in argv):
        from train import published  # noqa: PLC0415

        return published.main(argv)
    from train.evaluation import main as evaluate_workdir  # noqa: PLC0415

    return evaluate_workdir(argv)


if __name__ == "__main__":
    from zoo import cli

    sys.exit(cli.run(main))
