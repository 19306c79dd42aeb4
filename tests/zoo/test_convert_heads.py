"""The one head-replacement rule (zoo.convert.merge_head), shared by loading weights and transfer
learning, and conversion of a weight file for a model of another class count or without the file's
auxiliary classifiers."""
import numpy as np
import pytest
from flax import traverse_util

import zoo
from fixtures.parity.recipe import recipe_state_dict
from zoo import convert

def _tree(**leaves):
    return traverse_util.unflatten_dict({tuple(k.split("/")): np.asarray(v) for k, v in leaves.items()})


def test_merge_head_copies_everything_and_keeps_a_resized_head_fresh():
    fresh = _tree(**{"params/conv1/kernel": np.zeros((3, 3, 3, 8), np.float32), "params/fc/kernel": np.zeros((8, 2)),
                     "batch_stats/bn1/mean": np.zeros(8, np.float32)})
    loaded = _tree(**{"params/conv1/kernel": np.ones((3, 3, 3, 8), np.float64), "params/fc/kernel": np.ones((8, 1000)),
                      "batch_stats/bn1/mean": np.ones(8, np.float32)})
    out, kept, left_out = convert.merge_head(fresh, loaded, ("fc",))
    assert kept == ["params/fc/kernel"] and left_out == []
    assert out["params"]["conv1"]["kernel"].dtype == np.float32 and np.all(out["params"]["conv1"]["kernel"] == 1)
    assert np.all(out["params"]["fc"]["kernel"] == 0) and np.all(out["batch_stats"]["bn1"]["mean"] == 1)


def test_merge_head_refuses_a_structural_mismatch_listing_it():
    fresh = _tree(**{"params/conv1/kernel": np.zeros((3, 3, 3, 8)), "params/conv2/kernel": np.zeros((3, 3, 8, 8)),
                     "params/fc/kernel": np.zeros((8, 2))})
    loaded = _tree(**{"params/conv1/kernel": np.zeros((5, 5, 3, 8)), "params/conv9/kernel": np.zeros(1),
                      "params/fc/kernel": np.zeros((8, 2))})
    with pytest.raises(convert.WeightMismatchError) as e:
        convert.merge_head(fresh, loaded, ("fc",))
    assert e.value.missing == [("params/conv2/kernel", (3, 3, 8, 8))]
    assert e.value.unexpected == [("params/conv9/kernel", (1,))]
    assert e.value.wrong_shape == [("params/conv1/kernel", (3, 3, 3, 8), (5, 5, 3, 8))]



def test_merge_head_changes_nothing_and_names_the_source_when_it_refuses():
    fresh = _tree(**{"params/conv1/kernel": np.zeros((3, 3, 3, 8)), "params/fc/kernel": np.zeros((8, 2))})
    loaded = _tree(**{"params/conv1/kernel": np.ones((3, 3, 3, 4)), "params/fc/kernel": np.ones((8, 2))})
    with pytest.raises(convert.WeightMismatchError, match=r"^transfer\.init_from: the source .*nothing was loaded"):
        convert.merge_head(fresh, loaded, ("fc",), what="transfer.init_from: the source does not match the model")
    assert not fresh["params"]["conv1"]["kernel"].any() and loaded["params"]["fc"]["kernel"].all()
    # the head is only replaced where it differs: a head of the same shape is loaded
    out, kept, _ = convert.merge_head(fresh, _tree(**{"params/conv1/kernel": np.ones((3, 3, 3, 8)),
                                                      "params/fc/kernel": np.ones((8, 2))}), ("fc",))
    assert kept == [] and out["params"]["fc"]["kernel"].all()


def test_merge_head_with_auxiliary_classifiers_on_one_side():
    """Head modules the weights lack stay fresh; head modules the model lacks are left out, listed;
    a missing or extra module outside the head is still an error."""
    model = {"params/conv1/kernel": np.zeros((3, 3, 3, 8)), "params/fc/kernel": np.zeros((8, 2))}
    with_aux = {"params/aux1/fc2/kernel": np.ones((8, 2)), "batch_stats/aux1/conv/bn/mean": np.ones(4)}
    out, kept, left_out = convert.merge_head(_tree(**model), _tree(**model, **with_aux), ("aux1", "fc"))
    assert kept == [] and left_out == ["params/aux1/fc2/kernel", "batch_stats/aux1/conv/bn/mean"]
    assert set(out["params"]) == {"conv1", "fc"} and "batch_stats" not in out
    out, kept, left_out = convert.merge_head(_tree(**model, **with_aux), _tree(**model), ("aux1", "fc"))
    assert kept == ["params/aux1/fc2/kernel", "batch_stats/aux1/conv/bn/mean"] and left_out == []
    with pytest.raises(convert.WeightMismatchError) as e:
        convert.merge_head(_tree(**model), _tree(**model, **with_aux), ("fc",))   # aux1 is not a head module here
    assert [k for k, _ in e.value.unexpected] == ["params/aux1/fc2/kernel", "batch_stats/aux1/conv/bn/mean"]


SMALL = "shufflenet_v2_x0_5"  # 1.4M parameters


@pytest.mark.integration
def test_a_file_for_another_class_count_keeps_the_models_own_fresh_head():
    sd = recipe_state_dict(convert.state_dict_shapes(SMALL))      # 1000 classes
    model = zoo.create(SMALL, num_classes=10)
    variables, replaced = convert.convert_state_dict(SMALL, model, sd)
    assert replaced == {"fc": (1000, 10)}
    # the head is what the model's own initialisation gives it (only the head was initialised) ...
    own = zoo.init(model, (64, 64, 3))
    for leaf in ("kernel", "bias"):
        np.testing.assert_array_equal(np.asarray(variables["params"]["fc"][leaf]), own["params"]["fc"][leaf])
    # ... the rest is the file's, exactly
    back = convert.to_torchvision(SMALL, variables, model=model)
    assert all(np.array_equal(back[k], v) for k, v in sd.items() if not k.startswith("fc."))
    same, none = convert.convert_state_dict(SMALL, zoo.create(SMALL), sd)
    assert none == {} and np.array_equal(same["params"]["fc"]["kernel"], sd["fc.weight"].T)
