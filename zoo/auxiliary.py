"""Auxiliary classifiers (GoogLeNet's ``aux1`` / ``aux2``, Inception v3's ``AuxLogits``): their contract.

A model's output is always its logits ``(B, num_classes)``. A model with auxiliary classifiers
(``aux_logits=True``) runs them in train mode only; each classifier module sows its logits into the
``'aux_logits'`` collection (under its own path, as Flax sows intermediates), which a caller reads by
asking for it::

    logits, state = model.apply(variables, x, train=True, mutable=["batch_stats", AUX_COLLECTION],
                                rngs={"dropout": key})
    state[AUX_COLLECTION]      # {'aux1': {'logits': (B, K)}, 'aux2': {...}}; absent for models without them

``train.step.train_step`` adds their cross-entropy to the loss with ``config.aux_loss_weight`` each;
eval mode never runs them. A model without auxiliary classifiers never sows into the collection, so
its step is the same program as before. At initialisation the classifiers run too (in eval mode,
nothing sown), so that their parameters exist: counts with ``aux_logits=True`` include them, as
torchvision's do.

Torchvision's weights carry them for GoogLeNet and Inception v3 (``aux1.*`` / ``AuxLogits.*``); a model
class lists their top-level modules in ``aux_heads`` (``zoo.convert`` builds the model a file was
made for with or without them, and the registry counts them in ``ModelInfo.head``).
"""
from __future__ import annotations

import flax.linen as nn
import jax

AUX_COLLECTION = "aux_logits"


def runs_aux(module: nn.Module, train: bool) -> bool:
    """Whether ``module`` (a model with an ``aux_logits`` option) runs its auxiliary classifiers now:
    in train mode, and at initialisation (to create their parameters)."""
    return bool(module.aux_logits) and (train or module.is_initializing())


def aux_output(classifier: nn.Module, logits: jax.Array) -> jax.Array:
    """Sow ``logits`` ``(B, K)`` of an auxiliary ``classifier`` (called in its own compact method) into
    ``'aux_logits'`` as ``'logits'`` (never at init); returns them."""
    if classifier.is_mutable_collection(AUX_COLLECTION) and not classifier.is_initializing():
        classifier.sow(AUX_COLLECTION, "logits", logits, reduce_fn=lambda _, v: v, init_fn=lambda: None)
    return logits
