"""torchvision weights in and out (zoo.convert, zoo.load_pretrained): parity with torchvision's logits
on every fixture, round trips for every torchvision variant, weight files, head replacement, bad files,
the command line, auxiliary classifiers in the files (with and without) and in train mode."""
import logging
import re
import sys
import zlib
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import save_file

import zoo
from fixtures.parity.recipe import FIXTURES, parity_input, parse_shapes, recipe_state_dict
from helpers import inner_loop_sample, snapshot, write_pth
from zoo import convert
from zoo.auxiliary import AUX_COLLECTION
from zoo.convert.__main__ import main as convert_main

PARITY = Path(__file__).resolve().parents[1] / "fixtures" / "parity"


def fixture(name):
    d = np.load(PARITY / f"{name}.npz", allow_pickle=False)
    return parse_shapes(d["keys"], d["shapes"]), d["logits"]


def assert_same_state_dict(got: dict, want: dict):
    assert list(got) == list(want)  # same keys, torchvision's order
    for k, v in want.items():
        assert got[k].dtype == v.dtype and got[k].shape == v.shape, k
        assert np.array_equal(got[k], v), k


FAST = ("resnet18", "squeezenet1_0", "mobilenet_v3_small")  # the inner loop's sample; every fixture in the full run


@pytest.mark.parametrize("name", inner_loop_sample(FIXTURES, FAST))
def test_parity_with_torchvision_logits(name):
    shapes, logits = fixture(name)
    sd = recipe_state_dict(shapes)
    model = convert.model_for_state_dict(name, sd)  # googlenet / inception_v3 here: aux_logits=False (the file's)
    assert convert.state_dict_shapes(name, model=model) == shapes          # our keys and shapes are torchvision's
    assert list(convert.state_dict_shapes(name, model=model)) == list(shapes)  # ... in torchvision's order
    variables = convert.from_torchvision(name, sd)
    out = np.asarray(jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, parity_input()))
    err, scale = np.abs(out - logits).max(), np.abs(logits).max()
    assert err <= 1e-4 * scale, f"{name}: max|diff| {err:.3g} > 1e-4 * max|logits| ({scale:.4g})"
    assert_same_state_dict(convert.to_torchvision(name, variables), sd)   # round trip, every key


def _random_state_dict(shapes: dict) -> dict:
    """Cheap distinct values: every key a view into one random buffer at its own offset."""
    largest = max(int(np.prod(s)) for s in shapes.values())
    buf = np.random.default_rng(0).random(largest + 4096, dtype=np.float32)
    sd = {}
    for k, s in shapes.items():
        if k.endswith(".num_batches_tracked"):
            sd[k] = np.zeros((), np.int64)
        else:
            off = zlib.crc32(k.encode()) % 4096
            sd[k] = buf[off:off + int(np.prod(s))].reshape(s)
    return sd


@pytest.mark.parametrize("name", inner_loop_sample(convert.torchvision_models()))
def test_round_trip_every_torchvision_variant(name):
    shapes = convert.state_dict_shapes(name)
    sd = _random_state_dict(shapes)
    variables = convert.from_torchvision(name, sd)
    assert set(variables) == {"params", "batch_stats"} if any("running_mean" in k for k in sd) else {"params"}
    assert_same_state_dict(convert.to_torchvision(name, variables), sd)


def test_every_torchvision_family_variant_is_covered():
    names = set(convert.torchvision_models())
    expected = ({"alexnet", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small", "resnext50_32x4d",
                 "resnext101_32x8d", "resnext101_64x4d", "wide_resnet50_2", "wide_resnet101_2", "googlenet",
                 "inception_v3", "squeezenet1_0", "squeezenet1_1"}
                | {f"vgg{d}{bn}" for d in (11, 13, 16, 19) for bn in ("", "_bn")}
                | {f"resnet{d}" for d in (18, 34, 50, 101, 152)} | {f"densenet{d}" for d in (121, 161, 169, 201)}
                | {f"shufflenet_v2_{w}" for w in ("x0_5", "x1_0", "x1_5", "x2_0")}
                | {f"mnasnet{a}" for a in ("0_5", "0_75", "1_0", "1_3")}
                | {f"efficientnet_b{i}" for i in range(8)} | {f"efficientnet_v2_{s}" for s in "sml"})
    assert names == expected


def test_models_without_torchvision_counterpart_are_rejected():
    others = [n for n in zoo.list_models() if n not in convert.torchvision_models()]
    families = {n.split("_")[0].rstrip("0123456789") for n in others}
    assert {"alexnet_v1", "mobilenet_v1", "shufflenet_v1_g3", "lenet5", "resnet20", "resnet110"} <= set(others)
    assert families <= {"alexnet", "mobilenet", "shufflenet", "lenet", "resnet"}
    for n in others:
        with pytest.raises(ValueError, match="no torchvision counterpart"):
            convert.from_torchvision(n, {})
        with pytest.raises(ValueError, match="no torchvision counterpart"):
            convert.to_torchvision(n, {"params": {}})


def test_mobilenet_v2_options_convert_with_an_explicit_model():
    model = zoo.create("mobilenet_v2", width_mult=0.5, num_classes=7)
    shapes = convert.state_dict_shapes("mobilenet_v2", model=model)
    assert shapes["features.0.0.weight"] == (16, 3, 3, 3) and shapes["classifier.1.weight"] == (7, 1280)
    sd = _random_state_dict(shapes)
    variables = convert.from_torchvision("mobilenet_v2", sd, model=model)
    assert_same_state_dict(convert.to_torchvision("mobilenet_v2", variables, model=model), sd)


# ----------------------------------------------------------------------------- files, pretrained=

SMALL = "shufflenet_v2_x0_5"  # 1.4M parameters: cheap files


@pytest.fixture(scope="module")
def small_sd():
    return recipe_state_dict(convert.state_dict_shapes(SMALL))


@pytest.fixture(scope="module")
def small_file(small_sd, tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / f"{SMALL}.safetensors"
    convert.save_torchvision(SMALL, convert.from_torchvision(SMALL, small_sd), path)
    return path


def test_safetensors_file_round_trip(small_sd, small_file):
    sd = convert.load_state_dict(small_file)
    assert set(sd) == set(small_sd)
    assert_same_state_dict({k: sd[k] for k in small_sd}, small_sd)


def test_save_torchvision_keeps_an_existing_file_unless_told(small_sd, tmp_path):
    """From Python as from the command line (``--overwrite``): a user's file is never replaced silently."""
    path = tmp_path / "mine.safetensors"
    path.write_bytes(b"the user's own file")
    variables = convert.from_torchvision(SMALL, small_sd)
    with pytest.raises(FileExistsError, match=r"mine\.safetensors exists; nothing was written \(overwrite=True "
                                              r"replaces it\)$"):
        convert.save_torchvision(SMALL, variables, path)
    assert path.read_bytes() == b"the user's own file"
    convert.save_torchvision(SMALL, variables, path, overwrite=True)
    sd = convert.load_state_dict(path)
    assert_same_state_dict({k: sd[k] for k in small_sd}, small_sd)
    assert sd["conv1.1.num_batches_tracked"].dtype == np.int64 and sd["conv1.1.num_batches_tracked"].shape == ()


def test_pretrained_same_classes_loads_everything(small_sd, small_file, caplog):
    with caplog.at_level(logging.INFO, logger="zoo"):
        model, variables = zoo.load_pretrained(SMALL, file=small_file)
    assert not [r for r in caplog.records if "freshly initialised" in r.getMessage()]
    assert model.num_classes == 1000
    assert_same_state_dict(convert.to_torchvision(SMALL, variables), small_sd)


@pytest.mark.integration
def test_pretrained_head_replacement(small_sd, small_file, caplog):
    with caplog.at_level(logging.INFO, logger="zoo"):
        model, variables = zoo.load_pretrained(SMALL, num_classes=10, file=small_file)
    assert "head fc: 1000 -> 10 classes, freshly initialised" in caplog.text
    assert variables["params"]["fc"]["kernel"].shape == (1024, 10) and variables["params"]["fc"]["bias"].shape == (10,)
    assert np.all(np.isfinite(variables["params"]["fc"]["kernel"])) and np.std(variables["params"]["fc"]["kernel"]) > 0
    sd = convert.to_torchvision(SMALL, variables)
    assert sd["fc.weight"].shape == (10, 1024)
    rest = [k for k in small_sd if not k.startswith("fc.")]
    assert_same_state_dict({k: sd[k] for k in rest}, {k: small_sd[k] for k in rest})  # the rest loaded exactly
    assert list(variables["params"])[-1] == "fc"  # the model's own order, as model.init gives it
    logits = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, np.zeros((2, 32, 32, 3), np.float32))
    assert logits.shape == (2, 10)


def _expect_mismatch(fn, *fragments):
    with pytest.raises(convert.WeightMismatchError) as e:
        fn()
    msg = str(e.value)
    assert "nothing was loaded" in msg
    for f in fragments:
        assert f in msg, (f, msg)
    return e.value


def test_bad_weight_files_list_the_offending_keys(small_sd, tmp_path):
    bad = dict(small_sd)
    del bad["stage2.0.branch1.0.weight"]                              # missing
    bad["extra.weight"] = np.zeros((3, 4), np.float32)                # unexpected
    bad["conv1.0.weight"] = np.zeros((24, 3, 5, 5), np.float32)       # wrong shape
    path = tmp_path / "bad.safetensors"
    save_file(bad, str(path))
    fragments = ("missing keys (1)", "stage2.0.branch1.0.weight: expected shape [24, 1, 3, 3]",
                 "unexpected keys (1)", "extra.weight: found shape [3, 4]",
                 "wrong shapes (1)", "conv1.0.weight: expected shape [24, 3, 3, 3], found [24, 3, 5, 5]")
    err = _expect_mismatch(lambda: zoo.load_pretrained(SMALL, file=path), *fragments)
    assert [k for k, _ in err.missing] == ["stage2.0.branch1.0.weight"]
    assert err.unexpected == [("extra.weight", (3, 4))]
    assert err.wrong_shape == [("conv1.0.weight", (24, 3, 3, 3), (24, 3, 5, 5))]
    _expect_mismatch(lambda: convert.from_torchvision(SMALL, convert.load_state_dict(path)), *fragments)
    assert "hint" not in str(err)


def test_a_file_that_misses_as_a_whole_says_why(small_sd):
    """PyTorch Lightning's 'model.' on every key; the zoo's own Flax names (a converted-cache file)."""
    lightning = {f"model.{k}": v for k, v in small_sd.items()}
    _expect_mismatch(lambda: convert.from_torchvision(SMALL, lightning),
                     "hint: every key of the file starts with 'model.' (a wrapper module's name); strip it")
    flax = {"params/conv1_0/kernel": np.zeros((3, 3, 3, 24), np.float32), "batch_stats/conv1_1/mean": np.zeros(24)}
    _expect_mismatch(lambda: convert.from_torchvision(SMALL, flax), "hint: keys such as 'params/conv1/kernel' are "
                     "the zoo's own (Flax) layout")


def test_weights_of_another_width_are_refused(small_file):
    # x0_5 file -> x1_0 model: every stage differs; all listed (the message shows the first 40), nothing loaded
    err = _expect_mismatch(lambda: zoo.load_pretrained("shufflenet_v2_x1_0", num_classes=10, file=small_file),
                           "wrong shapes (266)", "... and 226 more",
                           "stage2.0.branch2.0.weight: expected shape [58, 24, 1, 1], found [24, 24, 1, 1]")
    assert ("conv5.0.weight", (1024, 464, 1, 1), (1024, 192, 1, 1)) in err.wrong_shape
    assert not err.missing and not err.unexpected


def test_to_torchvision_rejects_foreign_variables():
    variables = {"params": {"fc": {"kernel": np.zeros((1024, 5), np.float32)}}}
    _expect_mismatch(lambda: convert.to_torchvision(SMALL, variables), "missing keys", "conv1_0/kernel")
    with pytest.raises(ValueError, match="collections"):
        convert.to_torchvision(SMALL, {"params": {}, "intermediates": {}})


def test_unreadable_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        convert.load_state_dict(tmp_path / "nope.safetensors")
    (tmp_path / "w.npy").write_bytes(b"x")
    with pytest.raises(ValueError, match="unknown weight file type"):
        convert.load_state_dict(tmp_path / "w.npy")
    (tmp_path / "corrupt.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        convert.load_state_dict(tmp_path / "corrupt.safetensors")


def test_pth_is_read_without_torch(small_sd, tmp_path, monkeypatch):
    """A .pth (torch.save's zip format, DataParallel's 'module.' prefix) converts with torch absent."""
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch -> ImportError
    path = write_pth(tmp_path / "w.pth", {f"module.{k}": v for k, v in small_sd.items()})
    variables = convert.from_torchvision(SMALL, convert.load_state_dict(path))
    assert_same_state_dict(convert.to_torchvision(SMALL, variables), small_sd)


def test_legacy_densenet_names_are_renamed():
    shapes = convert.state_dict_shapes("densenet121")
    sd = _random_state_dict(shapes)
    legacy = {re.sub(r"(denselayer\d+\.(?:norm|conv))([12])\.", r"\1.\2.", k): v for k, v in sd.items()}
    assert "features.denseblock1.denselayer1.norm.1.weight" in legacy
    assert_same_state_dict(convert.to_torchvision("densenet121", convert.from_torchvision("densenet121", legacy)), sd)


def test_cli_check_and_pth2safetensors(small_file, small_sd, tmp_path, monkeypatch, capsys):
    assert convert_main(["check", SMALL, str(small_file)]) == 0
    assert "converts to shufflenet_v2_x0_5" in capsys.readouterr().out
    assert convert_main(["check", "resnet18", str(small_file)]) == 2
    assert "missing keys" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "torch", None)  # no PyTorch needed
    write_pth(tmp_path / "w.pth", small_sd, legacy=True)
    assert convert_main(["pth2safetensors", SMALL, str(tmp_path / "w.pth"), str(tmp_path / "w.safetensors")]) == 0
    out = convert.load_state_dict(tmp_path / "w.safetensors")
    assert set(out) == set(small_sd)
    assert_same_state_dict({k: out[k] for k in small_sd}, small_sd)
    # an existing destination is never replaced without --overwrite (checked before reading the source)
    (tmp_path / "mine.safetensors").write_bytes(b"the user's own file")
    before = snapshot(tmp_path)
    assert convert_main(["pth2safetensors", SMALL, str(tmp_path / "w.pth"), str(tmp_path / "mine.safetensors")]) == 2
    assert capsys.readouterr().err.strip() == (f"error: {tmp_path / 'mine.safetensors'} exists; choose another dst or "
                                               "pass --overwrite to replace it")
    assert snapshot(tmp_path) == before
    assert convert_main(["pth2safetensors", SMALL, str(tmp_path / "w.pth"), str(tmp_path / "mine.safetensors"),
                         "--overwrite"]) == 0
    out = convert.load_state_dict(tmp_path / "mine.safetensors")
    assert_same_state_dict({k: out[k] for k in small_sd}, small_sd)
    assert not list(tmp_path.glob(".*.part"))   # written beside, then moved over the old file
    # a folder (a trailing /, or below a file) is refused before anything is read or written
    (tmp_path / "afile").write_text("")
    before = snapshot(tmp_path)
    for dst, why in [(f"{tmp_path / 'new.safetensors'}/", "the file to write is needed"),
                     (str(tmp_path / "afile" / "x.safetensors"), f"{tmp_path / 'afile'} is a file, not a folder")]:
        assert convert_main(["pth2safetensors", SMALL, str(tmp_path / "w.pth"), dst]) == 2
        assert capsys.readouterr().err.startswith(f"error: dst={dst!r}: {why}")
    assert snapshot(tmp_path) == before


def test_head_of_another_input_width_is_not_replaced(small_sd, tmp_path):
    bad = dict(small_sd)
    bad["fc.weight"] = np.zeros((1000, 512), np.float32)   # fc takes 1024 features in this model
    path = tmp_path / "narrow_fc.safetensors"
    save_file(bad, str(path))
    # the file is checked against the model it was made for (its 1000 classes): the width is wrong there
    err = _expect_mismatch(lambda: zoo.load_pretrained(SMALL, num_classes=10, file=path),
                           "fc.weight: expected shape [1000, 1024], found [1000, 512]")
    assert err.wrong_shape == [("fc.weight", (1000, 1024), (1000, 512))]  # not taken for a head replacement
    assert not err.missing and not err.unexpected


def test_load_pretrained_needs_a_torchvision_layout(small_file):
    with pytest.raises(ValueError, match="no torchvision counterpart"):
        zoo.load_pretrained("lenet5", file=small_file)


# ----------------------------------------------------------------------------- auxiliary classifiers

AUX = np.load(PARITY / "aux_train.npz", allow_pickle=False)   # torchvision's models with them (README.md there)


def aux_fixture(name):
    return parse_shapes(AUX[f"{name}_keys"], AUX[f"{name}_shapes"])


@pytest.mark.parametrize("name", inner_loop_sample(["googlenet", "inception_v3"], {"googlenet"}))
def test_state_dicts_with_and_without_the_auxiliary_classifiers_both_load(name):
    with_aux, without = aux_fixture(name), fixture(name)[0]
    assert list(convert.state_dict_shapes(name).items()) == list(with_aux.items())   # the default model: with them
    for shapes, aux_logits in ((with_aux, True), (without, False)):
        sd = _random_state_dict(shapes)
        assert convert.model_for_state_dict(name, sd).aux_logits is aux_logits
        variables = convert.from_torchvision(name, sd)
        assert any(m in variables["params"] for m in zoo.model_info(name).head[:-1]) is aux_logits
        assert_same_state_dict(convert.to_torchvision(name, variables), sd)


@pytest.mark.integration
def test_the_auxiliary_classifiers_follow_the_file_into_a_model(tmp_path, caplog):
    """A file without them gives a model with them fresh ones; a file with them loads into a model built
    without them by leaving them out, as torchvision's googlenet(weights=...) does by default."""
    with_aux, without = aux_fixture("googlenet"), fixture("googlenet")[0]
    for shapes, file in ((with_aux, "with.safetensors"), (without, "without.safetensors")):
        save_file(_random_state_dict(shapes), str(tmp_path / file))
    with caplog.at_level(logging.INFO, logger="zoo"):
        model, v = zoo.load_pretrained("googlenet", file=tmp_path / "without.safetensors")
    assert model.aux_logits and {"aux1", "aux2"} <= set(v["params"])
    assert "head aux1: not in" in caplog.text and "head aux2: not in" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="zoo"):
        model, v = zoo.load_pretrained("googlenet", file=tmp_path / "with.safetensors", aux_logits=False,
                                       num_classes=10)
    assert not {"aux1", "aux2"} & set(v["params"]) and v["params"]["fc"]["kernel"].shape == (1024, 10)
    assert "head aux1 of" in caplog.text and "left out" in caplog.text and "head fc: 1000 -> 10" in caplog.text


def test_a_1x1_conv_classifier_gives_the_class_count(tmp_path):
    """SqueezeNet's classifier is a conv: the file's class count is read from its (out, in, 1, 1) weight."""
    sd = recipe_state_dict(fixture("squeezenet1_0")[0])
    sd = {**sd, "classifier.1.weight": sd["classifier.1.weight"][:10], "classifier.1.bias": sd["classifier.1.bias"][:10]}
    assert convert.model_for_state_dict("squeezenet1_0", sd).num_classes == 10
    save_file(sd, str(tmp_path / "w.safetensors"))
    model, variables = zoo.load_pretrained("squeezenet1_0", file=tmp_path / "w.safetensors", num_classes=3)
    assert variables["params"]["classifier_1"]["kernel"].shape == (1, 1, 512, 3)
    assert convert.to_torchvision("squeezenet1_0", variables)["classifier.1.weight"].shape == (3, 512, 1, 1)


@pytest.mark.integration   # GoogLeNet in train mode: ~30 s on 2 cores
def test_googlenet_auxiliary_classifiers_match_torchvision_in_train_mode():
    sd = recipe_state_dict(aux_fixture("googlenet"))
    model = zoo.create("googlenet", dropout=0.0, dropout_aux=0.0)
    variables = convert.from_torchvision("googlenet", sd, model=model)
    logits, state = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats", AUX_COLLECTION]))(
        variables, parity_input())
    for ours, theirs in ((logits, AUX["googlenet_train"]), (state[AUX_COLLECTION]["aux1"]["logits"], AUX["googlenet_aux1"]),
                         (state[AUX_COLLECTION]["aux2"]["logits"], AUX["googlenet_aux2"])):
        assert np.abs(np.asarray(ours) - theirs).max() <= 1e-4 * np.abs(theirs).max()


@pytest.mark.integration   # Inception v3 at 299x299 in float64: ~20 s on 2 cores
def test_inception_v3_auxiliary_classifier_matches_torchvision_in_train_mode_float64():
    sd = recipe_state_dict(aux_fixture("inception_v3"))
    x = np.random.default_rng(0).standard_normal((2, 3, 299, 299)).transpose(0, 2, 3, 1)
    with jax.enable_x64(True):
        model = zoo.create("inception_v3", dropout=0.0, dtype=jnp.float64, param_dtype=jnp.float64)
        variables = jax.tree.map(lambda a: np.asarray(a, np.float64), convert.from_torchvision("inception_v3", sd,
                                                                                                model=model))
        logits, state = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats", AUX_COLLECTION]))(
            variables, x)
        for ours, theirs in ((logits, AUX["inception_v3_train"]),
                             (state[AUX_COLLECTION]["AuxLogits"]["logits"], AUX["inception_v3_aux"])):
            assert np.abs(np.asarray(ours) - theirs).max() <= 1e-10 * np.abs(theirs).max()


def test_cli_messages_for_a_folder_as_source_and_a_destination_of_another_type(tmp_path, monkeypatch, capsys):
    """A folder given as the weight file was said not to exist; a dst that is not .safetensors was refused
    only after the whole source was read and converted."""
    (tmp_path / "dir.pth").mkdir()
    assert convert_main(["check", SMALL, str(tmp_path / "dir.pth")]) == 2
    assert capsys.readouterr().err == f"error: weight file {tmp_path / 'dir.pth'} is a directory, not a weight file\n"
    monkeypatch.setattr(sys.modules["zoo.convert.__main__"], "load_state_dict",
                        lambda *a: pytest.fail("the source was read"))
    for dst in ("x.pth", "noext"):
        assert convert_main(["pth2safetensors", SMALL, str(tmp_path / "w.pth"), str(tmp_path / dst)]) == 2
        assert capsys.readouterr().err == (f"error: dst={str(tmp_path / dst)!r}: weights are written as safetensors; "
                                           f"use a .safetensors file name\n")
