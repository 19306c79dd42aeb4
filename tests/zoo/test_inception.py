"""Inception v3 against Szegedy et al. 2016 (Table 1's grid sizes and depths at 299x299, the factorised
and expanded modules of figs. 5-7, one auxiliary classifier) and torchvision (module names with
underscores, BatchNorm eps 0.001, counts with and without the auxiliary classifier, input limits).
Published figures come from tests/fixtures/reference.json; shapes use jax.eval_shape."""
import jax
import numpy as np
import pytest

import zoo
from helpers import abstract_variables, batchnorm_settings, forward_shapes, key, reference
from zoo import convert
from zoo import inspect as zi
from zoo.auxiliary import AUX_COLLECTION
from zoo.summary import trace


def test_grid_sizes_and_depths_are_table1():
    """At 299x299: the stem ends at 35x35x192, three fig. 5 modules give 35x35x288, the reduction and four
    fig. 6 modules 17x17x768, the reduction and two fig. 7 modules 8x8x2048, pooled to 2048."""
    feats, logits = forward_shapes("inception_v3")
    assert feats == {"stem": (1, 35, 35, 192), "mixed5": (1, 35, 35, 288), "mixed6": (1, 17, 17, 768),
                     "mixed7": (1, 8, 8, 2048), "pre_logits": (1, 2048)}
    assert logits == (1, 1000)


def test_factorised_and_expanded_convolutions():
    params = abstract_variables("inception_v3")["params"]
    k = lambda module, conv: params[module][conv]["conv"]["kernel"].shape
    assert k("Mixed_5b", "branch5x5_2") == (5, 5, 48, 64) and k("Mixed_5b", "branch_pool") == (1, 1, 192, 32)
    # fig. 6 with n = 7: 1x7 then 7x1 (c7 = 128, 160, 160, 192 in Mixed_6b..6e)
    for module, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
        assert k(module, "branch7x7_2") == (1, 7, c7, c7) and k(module, "branch7x7_3") == (7, 1, c7, 192)
        assert k(module, "branch7x7dbl_5") == (1, 7, c7, 192)
    # fig. 7: the 3x3 branches split into a 1x3 and a 3x1, concatenated (320 + 768 + 768 + 192 = 2048)
    assert k("Mixed_7b", "branch3x3_2a") == (1, 3, 384, 384) and k("Mixed_7b", "branch3x3_2b") == (3, 1, 384, 384)
    assert k("Mixed_7c", "branch1x1") == (1, 1, 2048, 320) and k("Mixed_7c", "branch3x3dbl_1") == (1, 1, 2048, 448)
    assert params["AuxLogits"]["conv1"]["conv"]["kernel"].shape == (5, 5, 128, 768)
    assert params["AuxLogits"]["fc"]["kernel"].shape == (768, 1000) and params["fc"]["kernel"].shape == (2048, 1000)


@pytest.mark.parametrize("aux_logits, figure", [(True, "params_with_aux"), (False, "params")])
def test_parameter_counts_with_and_without_the_auxiliary_classifier(aux_logits, figure):
    ref = reference()["models"]["inception_v3"]
    rows, v = trace(zoo.create("inception_v3", aux_logits=aux_logits), (299, 299, 3))
    assert zoo.param_count(v) == ref[figure] and ("AuxLogits" in v["params"]) == aux_logits
    macs = sum(r.macs for r in rows)
    assert abs(macs - ref["gmacs"] * 1e9) <= (0.05 if aux_logits else 0.01) * ref["gmacs"] * 1e9


def test_torchvision_settings_and_default_input():
    model = zoo.create("inception_v3")
    info = zoo.model_info("inception_v3")
    assert batchnorm_settings(model, (75, 75, 3)) == {(1e-3, 0.9)}
    assert (model.aux_logits, model.transform_input, model.dropout) == (True, False, 0.5)
    assert info.input_shape == model.example_input_shape() == (299, 299, 3)
    assert info.resize_size == 342 and info.crop_fraction == pytest.approx(299 / 342)   # Resize(342), CenterCrop(299)
    assert info.head == ("AuxLogits", "fc")


def test_torchvision_names_keep_their_underscores():
    keys = list(convert.state_dict_shapes("inception_v3"))
    assert keys[:2] == ["Conv2d_1a_3x3.conv.weight", "Conv2d_1a_3x3.bn.weight"]
    for k in ("Mixed_5b.branch5x5_1.conv.weight", "Mixed_6e.branch7x7dbl_5.bn.running_var",
              "Mixed_7b.branch3x3_2a.conv.weight", "Mixed_5b.branch_pool.bn.num_batches_tracked",
              "AuxLogits.conv0.conv.weight", "AuxLogits.fc.bias", "fc.weight"):
        assert k in keys, k
    assert not any(".5b." in k or "Conv2d.1a" in k or "branch.pool" in k for k in keys)


@pytest.mark.integration
def test_input_limits():
    """At least 75x75 (torchvision's minimum); the auxiliary classifier, which runs in training, needs a 17x17
    Mixed_6e map: 299x299 (torchvision's fails below it too). Initialisation works from 75."""
    assert forward_shapes("inception_v3", (75, 75, 3))[0]["mixed7"] == (1, 1, 1, 2048)
    with pytest.raises(ValueError, match=r"^Inception3: input 74x74 is too small, expected \(B, H, W, 3\) with H, "
                                         r"W >=75; got shape \(1, 74, 74, 3\)"):
        abstract_variables("inception_v3", (74, 74, 3))
    model = zoo.create("inception_v3")
    v = abstract_variables(model, (75, 75, 3))
    assert "AuxLogits" in v["params"]

    def train(model, size):
        x = jax.ShapeDtypeStruct((2, size, size, 3), np.float32)
        return jax.eval_shape(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats", AUX_COLLECTION],
                                                       rngs={"dropout": key(0)}), v, x)

    with pytest.raises(ValueError, match=r"^Inception3: input 298x298 is too small for the auxiliary classifier, "
                                         r"which runs in training \(aux_logits=True needs H, W >= 299\); use "
                                         r"aux_logits=False from 75"):
        train(model, 298)
    assert train(model, 299)[1][AUX_COLLECTION]["AuxLogits"]["logits"].shape == (2, 1000)
    no_aux = model.clone(aux_logits=False)
    assert AUX_COLLECTION not in train(no_aux, 75)[1]


@pytest.mark.integration
def test_receptive_fields_and_grad_cam_layer():
    """Stem: 3x3/2 -> 3, 3x3 -> 7, 3x3 -> 11, pool 3/2 -> 15 (jump 4), 3x3 -> 23, pool 3/2 -> 31 (jump 8);
    each fig. 5 module adds 4 x 8 (a 5x5, or two 3x3): 63, 95, 127."""
    model = zoo.create("inception_v3", aux_logits=False)
    rf = zi.receptive_fields(model)
    assert [(rf[n].size[0], rf[n].jump[0]) for n in ("stem", "Mixed_5b", "Mixed_5c", "mixed5")] == \
        [(31, 8), (63, 8), (95, 8), (127, 8)]
    assert rf["mixed6"].jump == (16, 16) and rf["mixed7"].jump == (32, 32)
    assert zi.default_cam_layer(model) == "mixed7"
