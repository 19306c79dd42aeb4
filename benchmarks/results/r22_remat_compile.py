"""Round 22: the train step compiled with the model's forward under ``jax.checkpoint`` (remat).

    python benchmarks/results/r22_remat_compile.py {none,dots,nothing,dots_nobatch} --compile-only \
        --model densenet121 --batch 64 --res 32 --steps 2

The first argument picks the policy (``none``: the step as it is); the rest are profile_step.py's.
"""
import pathlib
import sys

import jax

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))
from train import step  # noqa: E402
policy_name = sys.argv.pop(1)
orig = step.train_step

class Remat:
    def __init__(self, m, policy): self.m, self.policy = m, policy
    def __getattr__(self, k): return getattr(self.m, k)
    def apply(self, variables, x, *, train, mutable, rngs):
        f = jax.checkpoint(lambda v, x, r: self.m.apply(v, x, train=train, mutable=mutable, rngs=r), policy=self.policy)
        return f(variables, x, rngs)

if policy_name != "none":
    pol = {"nothing": jax.checkpoint_policies.nothing_saveable,
           "dots": jax.checkpoint_policies.dots_saveable,
           "dots_nobatch": jax.checkpoint_policies.dots_with_no_batch_dims_saveable}[policy_name]
    def patched(state, batch, *, model, tx, cfg):
        return orig(state, batch, model=Remat(model, pol), tx=tx, cfg=cfg)
    step.train_step = patched
import profile_step  # noqa: E402
sys.exit(profile_step.main())
