"""Run a PyTorch benchmark script (argv[1], e.g. ../shared/torch_baseline/bench.py) with torchvision's
auxiliary classifiers off: ``googlenet`` and ``inception_v3`` built with ``aux_logits=False``, as
``bench.py --no-aux`` builds ours. (In train mode torchvision returns them as a tuple with the
logits, which the reference script's loss cannot take.)"""
import functools
import runpy
import sys

import torchvision.models as M

for name in ("googlenet", "inception_v3"):
    setattr(M, name, functools.partial(getattr(M, name), aux_logits=False, init_weights=True))
script = sys.argv.pop(1)
sys.argv[0] = script
runpy.run_path(script, run_name="__main__")
