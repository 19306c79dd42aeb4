"""Fine-tuning and feature extraction: named intermediate features, starting a run from a
weight file or a workdir (train.transfer), frozen parts bit-identical while the head trains, the
resnet18_finetune_folder config on a generated image folder, exporting trained weights."""
import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util
from PIL import Image

import train
import zoo
from configs import resnet18_finetune_folder
from fixtures.parity.recipe import recipe_state_dict
from train import step, transfer
from zoo import convert

# ----------------------------------------------------------------------------- named features

# The documented taps (family docstrings) with their shapes for one 224x224 image.
DOCUMENTED = {
    "resnet18": {"stem": (56, 56, 64), "layer1": (56, 56, 64), "layer2": (28, 28, 128), "layer3": (14, 14, 256),
                 "layer4": (7, 7, 512), "pre_logits": (512,)},
    "resnet50": {"layer1": (56, 56, 256), "layer4": (7, 7, 2048), "pre_logits": (2048,)},
    "vgg16": {"block1_conv1": (224, 224, 64), "block3_conv1": (56, 56, 256), "block5_conv3": (14, 14, 512),
              "pre_logits": (4096,)},
    "alexnet": {"relu1": (55, 55, 64), "relu5": (13, 13, 256), "relu6": (4096,), "relu7": (4096,),
                "pre_logits": (4096,)},
    "densenet121": {"stem": (56, 56, 64), "denseblock1": (56, 56, 256), "denseblock2": (28, 28, 512),
                    "denseblock3": (14, 14, 1024), "denseblock4": (7, 7, 1024), "norm5": (7, 7, 1024),
                    "pre_logits": (1024,)},
    "mobilenet_v2": {"stem": (112, 112, 32), "block1": (112, 112, 16), "block3": (56, 56, 24), "block6": (28, 28, 32),
                     "block13": (14, 14, 96), "block17": (7, 7, 320), "last_conv": (7, 7, 1280), "pre_logits": (1280,)},
    "mobilenet_v3_small": {"stem": (112, 112, 16), "block1": (56, 56, 16), "block3": (28, 28, 24),
                           "block8": (14, 14, 48), "block11": (7, 7, 96), "last_conv": (7, 7, 576),
                           "pre_logits": (1024,)},
    "shufflenet_v2_x1_0": {"stem": (56, 56, 24), "stage2": (28, 28, 116), "stage3": (14, 14, 232),
                           "stage4": (7, 7, 464), "conv5": (7, 7, 1024), "pre_logits": (1024,)},
}


@pytest.mark.parametrize("name", sorted(DOCUMENTED))
def test_feature_taps_have_the_documented_shapes(name):
    names = zoo.feature_names(zoo.create(name), (224, 224, 3))
    for tap, shape in DOCUMENTED[name].items():
        assert names.get(tap) == (1, *shape), (tap, names.get(tap))


def test_features_of_a_loaded_model_by_tap_and_module_path():
    model = zoo.create("resnet18")
    variables = convert.from_torchvision("resnet18", recipe_state_dict(convert.state_dict_shapes("resnet18")))
    x = np.random.default_rng(0).standard_normal((2, 64, 64, 3)).astype(np.float32)
    layers = ["layer1", "layer2", "layer3", "layer4", "pre_logits", "layer1_0/conv1"]

    @jax.jit
    def run(v, x):  # one compiled program: features and logits
        return zoo.features(model, v, x, layers=layers), model.apply(v, x, train=False)

    feats, logits = run(variables, x)
    assert [feats[k].shape for k in layers] == [(2, 16, 16, 64), (2, 8, 8, 128), (2, 4, 4, 256), (2, 2, 2, 512),
                                                (2, 512), (2, 16, 16, 64)]
    np.testing.assert_allclose(feats["pre_logits"], np.asarray(feats["layer4"]).mean(axis=(1, 2)), rtol=1e-5, atol=1e-5)
    head = variables["params"]["fc"]
    np.testing.assert_allclose(np.asarray(feats["pre_logits"]) @ head["kernel"] + head["bias"], logits,
                               rtol=1e-4, atol=1e-4 * float(np.abs(logits).max()))
    with pytest.raises(ValueError, match="neither a feature tap"):
        zoo.features(model, variables, x[:1, :32, :32], layers=["block3_conv1"])


# ----------------------------------------------------------------------------- merging sources

def _tree(**leaves):
    return traverse_util.unflatten_dict({tuple(k.split("/")): np.asarray(v) for k, v in leaves.items()})


def test_merge_copies_everything_and_keeps_a_resized_head_fresh():
    fresh = _tree(**{"params/conv1/kernel": np.zeros((3, 3, 3, 8), np.float32), "params/fc/kernel": np.zeros((8, 2)),
                     "batch_stats/bn1/mean": np.zeros(8, np.float32)})
    loaded = _tree(**{"params/conv1/kernel": np.ones((3, 3, 3, 8), np.float64), "params/fc/kernel": np.ones((8, 1000)),
                      "batch_stats/bn1/mean": np.ones(8, np.float32)})
    out, kept = transfer.merge(fresh, loaded, ("fc",))
    assert kept == ["params/fc/kernel"]
    assert out["params"]["conv1"]["kernel"].dtype == np.float32 and np.all(out["params"]["conv1"]["kernel"] == 1)
    assert np.all(out["params"]["fc"]["kernel"] == 0) and np.all(out["batch_stats"]["bn1"]["mean"] == 1)


def test_merge_refuses_a_structural_mismatch_listing_it():
    fresh = _tree(**{"params/conv1/kernel": np.zeros((3, 3, 3, 8)), "params/conv2/kernel": np.zeros((3, 3, 8, 8)),
                     "params/fc/kernel": np.zeros((8, 2))})
    loaded = _tree(**{"params/conv1/kernel": np.zeros((5, 5, 3, 8)), "params/conv9/kernel": np.zeros(1),
                      "params/fc/kernel": np.zeros((8, 2))})
    with pytest.raises(convert.WeightMismatchError) as e:
        transfer.merge(fresh, loaded, ("fc",))
    assert e.value.missing == [("params/conv2/kernel", (3, 3, 8, 8))]
    assert e.value.unexpected == [("params/conv9/kernel", (1,))]
    assert e.value.wrong_shape == [("params/conv1/kernel", (3, 3, 3, 8), (5, 5, 3, 8))]


# ----------------------------------------------------------------------------- the finetune config end to end

FROZEN = ("conv1", "bn1", "layer1_0", "layer1_1", "layer2_0", "layer2_1")  # the config's freeze regex


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """2 classes x 8 PNGs of 64x64: class 0 dark-ish, class 1 bright-ish, with noise."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for c, name in enumerate(("cats", "dogs")):
        (root / name).mkdir()
        for i in range(8):
            img = np.clip(rng.normal(80 + 100 * c, 40, (64, 64, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / name / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def weight_file(tmp_path_factory):
    """A torchvision-layout resnet18 file (1000 classes), random weights, via to_torchvision + safetensors."""
    path = tmp_path_factory.mktemp("weights") / "resnet18.safetensors"
    sd = recipe_state_dict(convert.state_dict_shapes("resnet18"))
    convert.save_torchvision("resnet18", convert.from_torchvision("resnet18", sd), path)
    return path


def finetune_config(image_folder, init_from, **overrides):
    c = resnet18_finetune_folder.get_config()
    c.data.name = f"folder:{image_folder}"
    c.transfer.init_from = str(init_from)
    c.data.image_size = 64
    c.data.augment = "none"
    c.data.holdout_fraction = 0.25
    c.batch_size = 4
    c.eval_batch_size = 4
    c.num_train_steps = 3
    c.log_every_steps = 1
    c.eval_every_epochs = 100.0
    c.checkpoint.every_steps = 1
    c.checkpoint.async_save = False
    c.update_from_flattened_dict(overrides)  # dotted names: {"data.name": ...}
    return c


@pytest.fixture(scope="module")
def finetuned(image_folder, weight_file, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("finetune")
    result = train.fit(finetune_config(image_folder, weight_file), workdir)
    return workdir, result


def _flat(tree):
    return {"/".join(k): np.asarray(v) for k, v in traverse_util.flatten_dict(tree).items()}


def test_finetune_config_trains_the_head_and_keeps_frozen_parts_bit_identical(finetuned, weight_file):
    workdir, result = finetuned
    assert result.step == 3 and np.isfinite(result.train["loss"])
    model = zoo.create("resnet18", num_classes=2)
    loaded, replaced = convert.convert_state_dict("resnet18", model, convert.load_state_dict(weight_file),
                                                  replace_head=True)
    assert replaced == {"fc": (1000, 2)}
    want = _flat(loaded)
    states = {s: _flat(train.restore(workdir, checkpoint_step=s)[1]) for s in (1, 3)}
    for s, got in states.items():
        for k, v in want.items():
            module = k.split("/")[1]
            if module in FROZEN:
                assert got[k].dtype == v.dtype and np.array_equal(got[k], v), (s, k)  # params AND BN statistics
    # trainable parts move: the head (full lr), layer3/layer4 (0.1 x lr) and their BN statistics
    changed = {k for k in states[3] if not np.array_equal(states[1][k], states[3][k])}
    assert {"params/fc/kernel", "params/fc/bias", "params/layer4_1/conv2/kernel", "params/layer3_0/conv1/kernel",
            "batch_stats/layer3_0/bn1/mean"} <= changed
    assert not {k for k in changed if k.split("/")[1] in FROZEN}
    assert states[3]["params/fc/kernel"].shape == (512, 2)


def test_init_from_a_workdir_and_structural_mismatch(finetuned, image_folder, caplog):
    workdir, _ = finetuned
    _, source = train.restore(workdir, checkpoint_step="best")

    def fresh_state(name, num_classes, ema=True):
        model = zoo.create(name, num_classes=num_classes)
        v = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)), train=False))
        zeros = jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), v)
        return model, step.TrainState(step=np.int32(0), params=zeros["params"], batch_stats=zeros["batch_stats"],
                                      opt_state=None, rng=None, ema_params=zeros["params"] if ema else None)

    config = finetune_config(image_folder, workdir)
    model, state = fresh_state("resnet18", 2)
    new = transfer.init_state(state, config, model, zoo.model_info("resnet18"))
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(new.params), jax.tree.leaves(source["params"])))
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(new.ema_params), jax.tree.leaves(new.params)))
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(new.batch_stats),
                                                    jax.tree.leaves(source["batch_stats"])))

    # another class count: the head stays fresh, the rest is copied
    model, state = fresh_state("resnet18", 5, ema=False)
    with caplog.at_level(logging.INFO, logger="train"):
        new = transfer.init_state(state, config, model, zoo.model_info("resnet18"))
    assert "freshly initialised: params/fc/bias, params/fc/kernel" in caplog.text
    assert np.all(new.params["fc"]["kernel"] == 0) and new.params["fc"]["kernel"].shape == (512, 5)
    assert np.array_equal(new.params["layer4_1"]["conv2"]["kernel"], source["params"]["layer4_1"]["conv2"]["kernel"])

    # another architecture: every difference listed, nothing loaded
    model, state = fresh_state("resnet34", 2)
    with pytest.raises(convert.WeightMismatchError, match="nothing was loaded") as e:
        transfer.init_state(state, config, model, zoo.model_info("resnet34"))
    assert ("params/layer1_2/conv1/kernel", (3, 3, 64, 64)) in e.value.missing


def test_init_from_a_bad_weight_file_is_refused(tmp_path, image_folder, weight_file):
    sd = convert.load_state_dict(weight_file)
    del sd["layer3.1.bn2.running_var"]
    path = tmp_path / "bad.safetensors"
    from safetensors.numpy import save_file
    save_file(sd, str(path))
    model = zoo.create("resnet18", num_classes=2)
    with pytest.raises(convert.WeightMismatchError, match=r"layer3\.1\.bn2\.running_var: expected shape \[256\]"):
        transfer.init_state(None, finetune_config(image_folder, path), model, zoo.model_info("resnet18"))
    with pytest.raises(FileNotFoundError, match="no such weight file or workdir"):
        transfer.init_state(None, finetune_config(image_folder, tmp_path / "nope"), model, zoo.model_info("resnet18"))


def test_export_trained_weights_for_torchvision(finetuned, tmp_path):
    workdir, _ = finetuned
    sd = transfer.export_torchvision(workdir, tmp_path / "out.safetensors", checkpoint_step="latest")
    back = convert.load_state_dict(tmp_path / "out.safetensors")
    assert set(back) == set(sd) and list(sd) == list(convert.state_dict_shapes("resnet18",
                                                                              model=zoo.create("resnet18", num_classes=2)))
    assert back["fc.weight"].shape == (2, 512) and all(np.array_equal(back[k], sd[k]) for k in sd)
    _, variables = train.restore(workdir, checkpoint_step="latest")
    assert np.array_equal(sd["layer4.1.conv2.weight"],
                          np.asarray(variables["params"]["layer4_1"]["conv2"]["kernel"]).transpose(3, 2, 0, 1))
