"""GoogLeNet against Szegedy et al. 2015 (Table 1's Inception modules, the auxiliary classifiers of
sec. 5) and torchvision (BatchNorm eps 0.001, the "5x5" branch as a 3x3 conv, names, counts with and
without the auxiliary classifiers, transform_input), the auxiliary-classifier contract in train and
eval mode, receptive fields through the concatenating branches, taps. Published figures come from
tests/fixtures/reference.json; compiled passes run on 32x32 inputs."""
import functools

import jax
import numpy as np
import pytest

import zoo
from helpers import abstract_variables, batchnorm_settings, forward_shapes, images, key, random_variables, reference, \
    run_once
from zoo import inspect as zi
from zoo.auxiliary import AUX_COLLECTION
from zoo.compiling import compile_once
from zoo.summary import trace

# Table 1 of the paper: #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj; input channels of 3a: 192.
TABLE1 = [("inception3a", (64, 96, 128, 16, 32, 32)), ("inception3b", (128, 128, 192, 32, 96, 64)),
          ("inception4a", (192, 96, 208, 16, 48, 64)), ("inception4b", (160, 112, 224, 24, 64, 64)),
          ("inception4c", (128, 128, 256, 24, 64, 64)), ("inception4d", (112, 144, 288, 32, 64, 64)),
          ("inception4e", (256, 160, 320, 32, 128, 128)), ("inception5a", (256, 160, 320, 32, 128, 128)),
          ("inception5b", (384, 192, 384, 48, 128, 128))]


def test_inception_modules_are_table1():
    params = abstract_variables("googlenet")["params"]
    c_in = 192
    for name, (c1, c3r, c3, c5r, c5, pool) in TABLE1:
        p = {k: v["conv"]["kernel"].shape for k, v in params[name].items()}
        assert p == {"branch1": (1, 1, c_in, c1), "branch2_0": (1, 1, c_in, c3r), "branch2_1": (3, 3, c3r, c3),
                     "branch3_0": (1, 1, c_in, c5r),
                     "branch3_1": (3, 3, c5r, c5),   # torchvision's 3x3 where the paper has 5x5 (vision#906)
                     "branch4_1": (1, 1, c_in, pool)}, name
        c_in = c1 + c3 + c5 + pool
    assert c_in == 1024 and params["fc"]["kernel"].shape == (1024, 1000)


@pytest.mark.parametrize("aux_logits, figure", [(True, "params_with_aux"), (False, "params")])
def test_parameter_counts_with_and_without_the_auxiliary_classifiers(aux_logits, figure):
    ref = reference()["models"]["googlenet"]
    rows, v = trace(zoo.create("googlenet", aux_logits=aux_logits), (224, 224, 3))
    assert zoo.param_count(v) == ref[figure]
    assert ({"aux1", "aux2"} <= set(v["params"])) == aux_logits
    macs = sum(r.macs for r in rows)
    assert abs(macs - ref["gmacs"] * 1e9) <= (0.05 if aux_logits else 0.01) * ref["gmacs"] * 1e9


def test_auxiliary_classifiers_are_section5():
    """Each: 4x4 average pool (torchvision: adaptive), 1x1 conv 128 + BN, fc 1024 on the 128 x 4 x 4 map, fc."""
    params = abstract_variables("googlenet")["params"]
    for aux, c_in in (("aux1", 512), ("aux2", 528)):  # on inception4a and inception4d
        p = params[aux]
        assert p["conv"]["conv"]["kernel"].shape == (1, 1, c_in, 128) and p["conv"]["bn"]["scale"].shape == (128,)
        assert p["fc1"]["kernel"].shape == (2048, 1024) and p["fc2"]["kernel"].shape == (1024, 1000)
    assert zoo.model_info("googlenet").head == ("aux1", "aux2", "fc")


def test_torchvision_settings():
    model = zoo.create("googlenet")
    assert batchnorm_settings(model, (64, 64, 3)) == {(1e-3, 0.9)}   # eps 0.001, PyTorch momentum 0.1
    assert (model.aux_logits, model.transform_input, model.dropout, model.dropout_aux) == (True, False, 0.2, 0.7)


def test_feature_taps_at_224():
    feats, logits = forward_shapes("googlenet")
    assert feats == {"stem": (1, 28, 28, 192), "inception3": (1, 28, 28, 480), "inception4": (1, 14, 14, 832),
                     "inception5": (1, 7, 7, 1024), "pre_logits": (1, 1024)}
    assert logits == (1, 1000)


@functools.lru_cache(maxsize=None)
def _small():
    """(model with 7 classes, 32x32 images, random variables)."""
    model = zoo.create("googlenet", num_classes=7)
    return model, images((4, 32, 32, 3)), random_variables(model, (32, 32, 3))


@pytest.mark.integration
def test_train_mode_sows_the_auxiliary_logits_eval_mode_ignores_them():
    model, x, v = _small()

    def run(v, x, k):
        return (model.apply(v, x, train=True, mutable=["batch_stats", AUX_COLLECTION], rngs={"dropout": k}),
                model.apply(v, x, train=False, mutable=[AUX_COLLECTION]))

    step = compile_once(run, v, x, key(1))  # one program, run with two dropout keys
    ((logits, state), (eval1, sown)), ((_, state2), (eval2, _)) = step(v, x, key(1)), step(v, x, key(2))
    assert {k: a["logits"].shape for k, a in state[AUX_COLLECTION].items()} == {"aux1": (4, 7), "aux2": (4, 7)}
    assert logits.shape == (4, 7) and np.isfinite(np.asarray(logits)).all()
    assert not np.allclose(logits, eval1)                       # batch statistics and dropout
    assert not np.allclose(state[AUX_COLLECTION]["aux1"]["logits"], state2[AUX_COLLECTION]["aux1"]["logits"])
    assert sown == {}                                           # eval mode: nothing sown ...
    np.testing.assert_array_equal(eval1, eval2)                  # ... and deterministic


def test_without_auxiliary_classifiers_nothing_is_sown():
    model, x, _ = _small()
    model = model.clone(aux_logits=False)
    v = random_variables(model, (32, 32, 3))
    assert not {"aux1", "aux2"} & set(v["params"])
    _, state = jax.eval_shape(lambda v: model.apply(v, x, train=True, mutable=["batch_stats", AUX_COLLECTION],
                                                    rngs={"dropout": key(0)}), v)
    assert AUX_COLLECTION not in state


@pytest.mark.integration
def test_transform_input_renormalises_imagenet_input():
    """transform_input=True on ImageNet-normalised x equals the plain model on (pixel - 0.5) / 0.5."""
    model, x, v = _small()
    mean, std = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)
    half_range = ((x * std + mean) - 0.5) / 0.5
    on, off = run_once(lambda v, x, y: (model.clone(transform_input=True).apply(v, x), model.apply(v, y)),
                       v, x, half_range)
    np.testing.assert_allclose(np.asarray(on), np.asarray(off), rtol=1e-4, atol=1e-4)


def test_receptive_fields_through_the_branches():
    """conv1 7/2 -> 7, pool 3/2 -> 11 (jump 4), conv3 3x3 -> 19, pool -> 27 (jump 8); each Inception module
    adds 2 x jump (its widest branches are 3x3, and the 3x3 max-pool before the pool projection):
    3a 43, 3b 59; pool -> 75 (jump 16), 4a-4e -> 235; pool 2/2 -> 251 (jump 32), 5a 315, 5b 379."""
    rf = zi.receptive_fields(zoo.create("googlenet"))
    expected = {"stem": (27, 8), "inception3a": (43, 8), "inception3a/branch4_1": (43, 8), "inception3": (59, 8),
                "inception4": (235, 16), "inception5": (379, 32)}
    assert {n: (rf[n].size[0], rf[n].jump[0]) for n in expected} == expected
    assert rf["stem"].start == (6, 6) and not rf["pre_logits"].spatial


@pytest.mark.integration
def test_grad_cam_layer_and_features_by_tap_name():
    model, x, v = _small()
    assert zi.default_cam_layer(zoo.create("googlenet")) == "inception5"
    feats = run_once(lambda v, x: zoo.features(model, v, x, layers=["inception4", "pre_logits", "inception3a"]), v, x)
    assert {k: a.shape for k, a in feats.items()} == {"inception4": (4, 2, 2, 832), "pre_logits": (4, 1024),
                                                      "inception3a": (4, 4, 4, 256)}


@pytest.mark.parametrize("override, pattern", [
    (dict(aux_logits="yes"), r"^aux_logits='yes': must be True or False$"),
    (dict(transform_input=1), r"^transform_input=1: must be True or False$"),
    (dict(dropout_aux=1.0), r"^dropout_aux=1\.0: must be a probability in \[0, 1\)$"),
    (dict(transform_input=True, in_channels=1), r"^transform_input=True re-normalises ImageNet RGB input: needs "
                                                r"in_channels=3, got 1$"),
])
def test_bad_options_name_the_argument(override, pattern):
    with pytest.raises(ValueError, match=pattern):
        zoo.create("googlenet", **override)


def test_input_below_15_pixels_is_refused():
    assert forward_shapes("googlenet", (15, 15, 3))[1] == (1, 1000)  # torchvision's minimum
    with pytest.raises(ValueError, match=r"^GoogLeNet: input 14x14 is too small, expected \(B, H, W, 3\) with H, W >=15"):
        abstract_variables("googlenet", (14, 14, 3))
