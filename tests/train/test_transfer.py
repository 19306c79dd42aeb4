"""Fine-tuning and feature extraction: starting a run from published weights by name, a weight file or
a workdir (train.transfer), frozen parts bit-identical while the head trains, the
resnet18_finetune_folder config on a generated image folder, exporting trained weights."""
import hashlib
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
from zoo.weights import catalogue

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
def published(weight_file):
    """``weight_file`` as the catalogue entry resnet18 TEST (a file:// URL): ``pretrained:resnet18:TEST``."""
    zoo.register_weights("resnet18", "TEST", url=weight_file.as_uri(),
                         sha256=hashlib.sha256(weight_file.read_bytes()).hexdigest())
    yield "pretrained:resnet18:TEST"
    catalogue.unregister("resnet18", "TEST")


@pytest.fixture(scope="module")
def finetuned(image_folder, published, tmp_path_factory):
    """The finetune config as it is (init_from='pretrained:resnet18'), with the TEST tag: by name."""
    assert resnet18_finetune_folder.get_config().transfer.init_from == "pretrained:resnet18"
    workdir = tmp_path_factory.mktemp("finetune")
    result = train.fit(finetune_config(image_folder, published), workdir)
    return workdir, result


def _flat(tree):
    return {"/".join(k): np.asarray(v) for k, v in traverse_util.flatten_dict(tree).items()}


@pytest.mark.integration
def test_finetune_config_trains_the_head_and_keeps_frozen_parts_bit_identical(finetuned, weight_file):
    workdir, result = finetuned
    assert result.step == 3 and np.isfinite(result.train["loss"])
    model = zoo.create("resnet18", num_classes=2)
    loaded, replaced = convert.convert_state_dict("resnet18", model, convert.load_state_dict(weight_file))
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


@pytest.mark.integration
def test_init_from_a_workdir_and_structural_mismatch(finetuned, image_folder, caplog):
    workdir, _ = finetuned
    _, source = train.restore(workdir, checkpoint_step="best")

    def fresh_state(name, num_classes, ema=True):
        model = zoo.create(name, num_classes=num_classes)
        v = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)), train=False))
        zeros = jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), v)
        return model, step.TrainState(step=np.int32(0), params=zeros["params"], batch_stats=zeros["batch_stats"],
                                      opt_state=None, rng=None, ema_params=zeros["params"] if ema else None,
                                      ema_batch_stats=zeros["batch_stats"] if ema else None)

    config = finetune_config(image_folder, workdir)
    model, state = fresh_state("resnet18", 2)
    new = transfer.init_state(state, config, model, zoo.model_info("resnet18"))
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(new.params), jax.tree.leaves(source["params"])))
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(new.ema_params), jax.tree.leaves(new.params)))
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(new.ema_batch_stats),
                                                    jax.tree.leaves(source["batch_stats"])))
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


def test_init_from_published_weights_needs_the_configs_model(published, image_folder):
    model = zoo.create("resnet18", num_classes=2)
    loaded, description = transfer.load_source(published, "resnet18", model)
    assert description == "published weights resnet18 TEST" and loaded["params"]["fc"]["kernel"].shape == (512, 1000)
    with pytest.raises(ValueError, match="config.model is 'resnet34': weights of one architecture do not fit another"):
        transfer.load_source(published, "resnet34", zoo.create("resnet34"))
    with pytest.raises(ValueError, match=r"^transfer\.init_from='pretrained:resnet18:V9': weights='V9': resnet18 "
                                         r"has IMAGENET1K_V1, TEST or 'DEFAULT'$"):
        transfer.load_source("pretrained:resnet18:V9", "resnet18", model)


@pytest.mark.parametrize("init_from, model, message", [
    ("pretrained:lenet5", "lenet5", r"^transfer\.init_from='pretrained:lenet5': no weights are catalogued for "
                                    r"'lenet5'; models with weights: alexnet, "),
    ("pretrained:resnet18:A:B", "resnet18", r"^transfer\.init_from='pretrained:resnet18:A:B': pretrained:MODEL or "
                                            r"pretrained:MODEL:TAG \(e\.g\. pretrained:resnet50:IMAGENET1K_V2\)"),
    ("pretrained:", "resnet18", r"^transfer\.init_from='pretrained:': pretrained:MODEL or"),
    ("pretrained:resnet34", "resnet18", r"^transfer\.init_from='pretrained:resnet34' but config\.model is 'resnet18'"),
    ("no/such/file.safetensors", "resnet18", r"^transfer\.init_from='no/such/file\.safetensors': no such weight "
                                             r"file or workdir$"),
])
def test_a_bad_init_from_is_one_line_naming_the_field(init_from, model, message):
    """Checked before the run compiles anything (train.fit calls check_source first): each one line
    naming ``transfer.init_from``, where the catalogue's messages alone named no field."""
    with pytest.raises((ValueError, FileNotFoundError), match=message) as e:
        transfer.check_source(init_from, model)
    assert "\n" not in str(e.value)


def test_a_folder_without_checkpoints_or_an_unknown_file_type_is_refused_before_compiling(image_folder, tmp_path):
    """Both once failed after the initial state compiled, naming a file but not the field."""
    with pytest.raises(FileNotFoundError, match=r"^transfer\.init_from=.*: a folder without checkpoints; give a workdir"):
        transfer.check_source(str(image_folder), "resnet18")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match=r"^transfer\.init_from=.*notes\.txt': unknown weight file type '\.txt'; "
                                         r"allowed: \.safetensors, \.pth"):
        transfer.check_source(str(tmp_path / "notes.txt"), "resnet18")


def test_a_resumed_run_keeps_its_transfer_settings(image_folder, weight_file, tmp_path, caplog):
    """Another freeze or backbone_lr_mult on resume failed on the optimizer state's leaves, naming
    neither field; another init_from was ignored without a word."""
    stored = finetune_config(image_folder, weight_file).to_dict()
    same = finetune_config(image_folder, weight_file)
    transfer.check_resume(same, stored, tmp_path)
    for field, value in (("freeze", "none"), ("backbone_lr_mult", 0.5)):
        changed = finetune_config(image_folder, weight_file, **{f"transfer.{field}": value})
        with pytest.raises(train.checkpoint.WorkdirMismatchError,
                           match=rf"^transfer\.{field}={value!r}: .* was trained with .*; nothing was changed"):
            transfer.check_resume(changed, stored, tmp_path)
    with caplog.at_level(logging.WARNING, logger="train"):
        transfer.check_resume(finetune_config(image_folder, "/elsewhere.pth"), stored, tmp_path)
    assert "transfer.init_from='/elsewhere.pth': ignored" in caplog.text


def test_init_from_a_bad_weight_file_is_refused(tmp_path, image_folder, weight_file):
    sd = convert.load_state_dict(weight_file)
    del sd["layer3.1.bn2.running_var"]
    path = tmp_path / "bad.safetensors"
    from safetensors.numpy import save_file
    save_file(sd, str(path))
    model = zoo.create("resnet18", num_classes=2)
    with pytest.raises(convert.WeightMismatchError, match=r"layer3\.1\.bn2\.running_var: expected shape \[256\]") as e:
        transfer.init_state(None, finetune_config(image_folder, path), model, zoo.model_info("resnet18"))
    assert str(e.value).startswith(f"transfer.init_from={str(path)!r}: resnet18: the weights do not match")
    assert ("layer3.1.bn2.running_var", (256,)) in e.value.missing
    with pytest.raises(FileNotFoundError, match="no such weight file or workdir"):
        transfer.init_state(None, finetune_config(image_folder, tmp_path / "nope"), model, zoo.model_info("resnet18"))


@pytest.mark.integration
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


def test_export_never_replaces_a_file_without_overwrite(tmp_path, capsys):
    mine = tmp_path / "mine.safetensors"
    mine.write_bytes(b"the user's own file")
    # refused before the workdir is read (there is none here)
    assert transfer.main(["export", str(tmp_path / "no-run"), str(mine)]) == 2
    assert capsys.readouterr().err == f"error: {mine} exists; choose another dst or pass --overwrite to replace it\n"
    assert mine.read_bytes() == b"the user's own file"


def test_export_refuses_an_empty_workdir(tmp_path, capsys, monkeypatch):
    """``Path('')`` would be the current directory, read as a run."""
    monkeypatch.chdir(tmp_path)
    assert transfer.main(["export", " ", str(tmp_path / "out.safetensors")]) == 2
    assert capsys.readouterr().err == "error: workdir ' ': empty; name a folder (e.g. runs/lenet5)\n"
    assert list(tmp_path.iterdir()) == []



def test_export_names_dst_as_typed(tmp_path, capsys):
    """A folder as dst was refused as ``path=...`` (the library's argument), after the workdir was read."""
    (tmp_path / "adir").mkdir()
    for dst, why in [(tmp_path / "adir", "the file to write is needed (a path such as resnet18.safetensors, "
                                         "not a folder)"),
                     (tmp_path / "w.pth", "weights are written as safetensors; use a .safetensors file name")]:
        assert transfer.main(["export", str(tmp_path / "no-run"), str(dst), "--overwrite"]) == 2
        assert capsys.readouterr().err == f"error: dst={str(dst)!r}: {why}\n"
    assert [p.name for p in tmp_path.iterdir()] == ["adir"]
