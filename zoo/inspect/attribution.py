"""Why a network decides as it does: predictions, saliency (Simonyan et al. 2014), Grad-CAM
(Selvaraju et al. 2017), occlusion sensitivity (Zeiler & Fergus 2014) and class models.

The class score ``S_c`` is the logit (pre-softmax), as in Simonyan et al.; ``class_index=None`` means
the predicted class of each image. "Zero" is 0 in the normalised input space, i.e. the dataset mean
colour (not grey: nearly black for MNIST). Images ``x`` are ``(B, H, W, C)`` or one ``(H, W, C)``,
normalised as in training.
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from zoo.checks import check_bool, check_nonnegative_int, check_positive_int, is_finite_number
from zoo.features import feature_gradients, feature_names
from zoo.inspect.inputs import as_batch, check_class, class_indices


def _pick(logits: jax.Array, classes: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(scores ``S_c`` (B,), classes used (B,)); class -1 is replaced by the argmax."""
    c = jnp.where(classes < 0, jnp.argmax(jax.lax.stop_gradient(logits), axis=-1), classes)
    return jnp.take_along_axis(logits, c[:, None], axis=1)[:, 0], c


def spatial_taps(model, input_shape=None) -> list[str]:
    """Feature taps (forward order) whose output is a spatial map ``(1, h, w, C)`` of at least 2x2,
    read from the taps' shapes (:func:`zoo.feature_names`). ``input_shape`` ``(H, W, C)``: default
    ``model.example_input_shape()``."""
    shape = tuple(input_shape) if input_shape is not None else model.example_input_shape()
    return [n for n, s in feature_names(model, shape).items() if len(s) == 4 and min(s[1:3]) >= 2]


def default_cam_layer(model, input_shape=None) -> str:
    """Grad-CAM's default layer: the last of :func:`spatial_taps` (ResNet ``layer4``, VGG
    ``block5_conv3``, AlexNet ``relu5``, LeNet ``s4``, DenseNet ``norm5``...)."""
    taps = spatial_taps(model, input_shape)
    if not taps:
        raise ValueError(f"{type(model).__name__} has no spatial feature tap for Grad-CAM")
    return taps[-1]


# ----------------------------------------------------------------------------- gradients of the class score

@functools.partial(jax.jit, static_argnums=0)
def _logits(model, variables, x):
    return model.apply(variables, x, train=False).astype(jnp.float32)


def predict(model, variables, x) -> tuple[np.ndarray, np.ndarray]:
    """(predicted classes (B,), softmax probabilities (B, K))."""
    logits = _logits(model, variables, as_batch(x))
    return np.asarray(jnp.argmax(logits, -1)), np.asarray(jax.nn.softmax(logits, -1))


@functools.partial(jax.jit, static_argnums=0)
def _input_gradient(model, variables, x, classes):
    def total(x):
        scores, c = _pick(model.apply(variables, x, train=False).astype(jnp.float32), classes)
        return scores.sum(), c
    return jax.grad(total, has_aux=True)(x)


def saliency(model, variables, x, class_index=None) -> np.ndarray:
    """Image-specific class saliency (Simonyan, Vedaldi & Zisserman 2014): ``max_c |dS_c / dI|`` over
    the colour channels, ``(B, H, W)``, non-negative. ``class_index``: int or (B,) ints (default: predicted)."""
    x = as_batch(x)
    grads, _ = _input_gradient(model, variables, x, class_indices(class_index, x.shape[0], model.num_classes))
    return np.asarray(jnp.abs(grads).max(axis=-1))


@functools.partial(jax.jit, static_argnums=(0, 3))
def _grad_cam(model, variables, x, layer, classes):
    def score(logits):
        return _pick(logits, classes)[0].sum()
    feats, grads = feature_gradients(model, variables, x, [layer], score)
    a, g = feats[layer].astype(jnp.float32), grads[layer].astype(jnp.float32)
    alpha = g.mean(axis=(1, 2))                                  # (B, K): global-average of dS_c/dA^k
    cam = jax.nn.relu(jnp.einsum("bhwk,bk->bhw", a, alpha))      # (B, h, w)
    up = jax.image.resize(cam, (x.shape[0], *x.shape[1:3]), "bilinear")
    return jnp.maximum(up, 0.0), cam


def grad_cam(model, variables, x, class_index=None, layer: str | None = None, *, upsample: bool = True) -> np.ndarray:
    """Grad-CAM (Selvaraju et al. 2017): ``alpha_k^c = mean_ij dS_c / dA^k_ij``, map
    ``ReLU(sum_k alpha_k^c A^k)`` at tap ``layer`` (default :func:`default_cam_layer`), bilinearly
    upsampled to the input size: ``(B, H, W)`` (``upsample=False``: the layer's ``(B, h, w)``), >= 0."""
    check_bool("upsample", upsample)
    x = as_batch(x)
    if layer is None:
        layer = default_cam_layer(model, x.shape[1:])
    elif not isinstance(layer, str) or layer not in (taps := spatial_taps(model, x.shape[1:])):
        raise ValueError(f"layer={layer!r}: Grad-CAM needs a spatial feature tap of {type(model).__name__} "
                         f"(at least 2x2 for this input): {', '.join(taps) if isinstance(layer, str) else 'a str'}")
    up, cam = _grad_cam(model, variables, x, layer, class_indices(class_index, x.shape[0], model.num_classes))
    return np.asarray(up if upsample else cam)


# ----------------------------------------------------------------------------- occlusion

class Occlusion(NamedTuple):
    """``map``: (H, W) mean drop of the class probability over the patches covering each pixel;
    ``drops``: (len(rows), len(cols)) drop per patch position (top-left corners ``rows`` x ``cols``);
    ``probability``: p_c of the unoccluded image; ``class_index``; ``patch``: side in pixels."""

    map: np.ndarray
    drops: np.ndarray
    probability: float
    class_index: int
    rows: np.ndarray
    cols: np.ndarray
    patch: int


@functools.partial(jax.jit, static_argnums=(0, 6, 7))
def _occluded_probabilities(model, variables, x, c, corners, fill, patch, batch_size):
    h, w = x.shape[:2]
    rows, cols = jnp.arange(h), jnp.arange(w)

    def prob(corner):
        y0, x0 = corner[0], corner[1]
        inside = ((rows >= y0) & (rows < y0 + patch))[:, None] & ((cols >= x0) & (cols < x0 + patch))[None, :]
        img = jnp.where(inside[..., None], fill, x)
        logits = model.apply(variables, img[None], train=False)[0].astype(jnp.float32)
        return jax.nn.softmax(logits)[c]

    # lax.map with batch_size: chunks of batch_size occluded copies, each one vmapped (batched) forward
    return jax.lax.map(prob, corners, batch_size=batch_size)


def _positions(n: int, patch: int, stride: int) -> np.ndarray:
    pos = list(range(0, max(n - patch, 0) + 1, stride))
    if pos[-1] != max(n - patch, 0):
        pos.append(n - patch)
    return np.asarray(pos, np.int32)


def occlusion(model, variables, x, class_index=None, *, patch: int | None = None, stride: int | None = None,
              fill: float = 0.0, batch_size: int = 64) -> Occlusion:
    """Occlusion sensitivity (Zeiler & Fergus 2014) of one image ``x`` ``(H, W, C)``: a ``patch`` x
    ``patch`` square of value ``fill`` (0: the dataset mean colour) slides with ``stride`` over the
    image (the last row/column of positions touches the far edge); the drop of the class probability
    ``p_c(x) - p_c(occluded)`` is mapped. All occluded copies are one jit-compiled ``lax.map`` over
    chunks of ``batch_size`` (each chunk one batched forward pass). Defaults: patch = side / 7
    (at least 1), stride = patch / 2."""
    x = as_batch(x)
    if x.shape[0] != 1:
        raise ValueError(f"occlusion takes one image, got a batch of {x.shape[0]}")
    h, w = x.shape[1:3]
    patch = max(1, round(min(h, w) / 7)) if patch is None else patch
    check_positive_int("patch", patch)
    stride = max(1, patch // 2) if stride is None else stride
    check_positive_int("stride", stride)
    check_positive_int("batch_size", batch_size)
    if not 1 <= patch <= min(h, w):
        raise ValueError(f"patch={patch}: must be between 1 and the image side {min(h, w)}")
    if not is_finite_number(fill):
        raise ValueError(f"fill={fill!r}: a finite number (the value of the patch in normalised pixels; 0 is the mean)")
    c = None if class_index is None else check_class(class_index, model.num_classes)
    _, probs = predict(model, variables, x)
    c = int(np.argmax(probs[0])) if c is None else c
    rows, cols = _positions(h, patch, stride), _positions(w, patch, stride)
    corners = np.stack(np.meshgrid(rows, cols, indexing="ij"), -1).reshape(-1, 2)
    p = _occluded_probabilities(model, variables, x[0], jnp.int32(c), jnp.asarray(corners), jnp.float32(fill),
                                patch, int(batch_size))
    drops = float(probs[0, c]) - np.asarray(p, np.float64)
    # input-size map: mean drop over the patches covering each pixel
    ry = (np.arange(h)[None, :] >= corners[:, :1]) & (np.arange(h)[None, :] < corners[:, :1] + patch)   # (N, H)
    rx = (np.arange(w)[None, :] >= corners[:, 1:]) & (np.arange(w)[None, :] < corners[:, 1:] + patch)   # (N, W)
    total = np.einsum("n,nh,nw->hw", drops, ry.astype(np.float64), rx.astype(np.float64))
    count = np.einsum("nh,nw->hw", ry.astype(np.float64), rx.astype(np.float64))
    return Occlusion(map=(total / np.maximum(count, 1)).astype(np.float32),
                     drops=drops.reshape(len(rows), len(cols)).astype(np.float32), probability=float(probs[0, c]),
                     class_index=c, rows=rows, cols=cols, patch=patch)


# ----------------------------------------------------------------------------- class model visualisation

@functools.partial(jax.jit, static_argnums=(0, 6, 7))
def _ascend(model, variables, c, learning_rate, l2, image0, steps, normalize):
    def objective(img):
        s = model.apply(variables, img[None], train=False)[0, c].astype(jnp.float32)
        return s - l2 * jnp.sum(jnp.square(img)), s

    def step(img, _):
        (_, s), g = jax.value_and_grad(objective, has_aux=True)(img)
        if normalize:
            g = g / (jnp.sqrt(jnp.mean(jnp.square(g))) + 1e-12)
        return img + learning_rate * g, s

    img, scores = jax.lax.scan(step, image0, None, length=steps)
    return img, jnp.concatenate([scores, objective(img)[1][None]])


def class_model(model, variables, class_index: int, *, input_shape=None, steps: int = 100,
                learning_rate: float = 0.1, l2: float = 1e-2, normalize: bool = True,
                init=None) -> tuple[np.ndarray, np.ndarray]:
    """Class model visualisation (Simonyan et al. 2014, sec. 2): the image maximising
    ``S_c(I) - l2 * ||I||^2`` by gradient ascent from the zero image (the dataset mean after
    normalisation). Each step moves ``I`` by ``learning_rate`` times the gradient of the objective,
    divided by its root-mean-square when ``normalize`` (steps of a fixed size in normalised pixel
    units, whatever the network's gradient scale). Returns ``(image (H, W, C), scores (steps + 1,))``:
    ``S_c`` of each iterate, the starting image first.

    ``learning_rate``: a finite number > 0 (the ascent's step); ``l2``: a finite number >= 0;
    ``normalize``: True or False. ``init``: another starting image ``(H, W, C)``, a float image
    normalised as in training like the other analyses' inputs. (An untrained network whose biases are
    all zero has every pre-activation, hence every ReLU gradient, exactly 0 at the zero image: start it
    from small noise instead.)"""
    shape = tuple(input_shape) if input_shape is not None else model.example_input_shape()
    class_index = check_class(class_index, model.num_classes)
    check_nonnegative_int("steps", steps)
    if not is_finite_number(learning_rate) or not learning_rate > 0:
        raise ValueError(f"learning_rate={learning_rate!r}: must be a finite number > 0 (a step of gradient ascent)")
    if not is_finite_number(l2) or not l2 >= 0:
        raise ValueError(f"l2={l2!r}: must be a finite number >= 0 (the weight of ||I||^2)")
    check_bool("normalize", normalize)
    if init is not None and np.shape(init) != shape:
        raise ValueError(f"init: a starting image of shape {shape} (input_shape), got {np.shape(init)}")
    image0 = jnp.zeros(shape, jnp.float32) if init is None else as_batch(init, "init")[0]
    img, scores = _ascend(model, variables, jnp.int32(class_index), jnp.float32(learning_rate), jnp.float32(l2),
                          image0, int(steps), bool(normalize))
    return np.asarray(img), np.asarray(scores)
