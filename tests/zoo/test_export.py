"""The network out of JAX (zoo.export): StableHLO through jax.export reloads with identical logits, ONNX
(jax2onnx) runs in onnxruntime within 1e-4 of torchvision's logits on the parity fixtures, with a
dynamic batch and NHWC float32 input; the command writes the artifact and its description, and never
replaces a file unless told to. Tests that convert to ONNX are marked integration: jax2onnx imports
its lax plugins on first use (about 2 s on a 2-core machine; all of its plugins, 13 s more, when a
primitive has none among them)."""
import json
import sys

import jax
import numpy as np
import pytest

import train
import zoo
from fixtures.parity.recipe import FIXTURES, parity_input, parse_shapes, recipe_state_dict
from helpers import FIXTURES as FIXTURES_DIR
from helpers import images, snapshot
from zoo import convert, export

ort = pytest.importorskip("onnxruntime", reason="the export extra: pip install -e '.[export]'")
pytest.importorskip("jax2onnx", reason="the export extra: pip install -e '.[export]'")


@pytest.fixture(scope="module")
def lenet():
    model = zoo.create("lenet5")
    return model, zoo.init(model, (28, 28, 1), rng=3)


def test_stablehlo_reloads_with_identical_logits_for_any_batch(lenet):
    model, variables = lenet
    data = export.stablehlo(model, variables, (28, 28, 1))
    reloaded = jax.export.deserialize(data)
    assert reloaded.in_avals[0].dtype == np.float32 and str(reloaded.in_avals[0].shape[0]) == "batch"
    ours = jax.jit(export.logits_fn(model, variables))
    for n in (1, 5):
        x = images((n, 28, 28, 1), n)
        np.testing.assert_array_equal(np.asarray(reloaded.call(x)), np.asarray(ours(x)))


@pytest.mark.integration
def test_onnx_runs_in_onnxruntime_for_any_batch(lenet):
    model, variables = lenet
    data = export.onnx(model, variables, (28, 28, 1))
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, inp.type, inp.shape[1:], out.name) == ("image", "tensor(float)", [28, 28, 1], "logits")
    assert isinstance(inp.shape[0], str)  # a symbolic batch dimension
    for n in (1, 4):
        x = images((n, 28, 28, 1), n)
        want = np.asarray(jax.jit(export.logits_fn(model, variables))(x))
        got = session.run(["logits"], {"image": x})[0]
        assert got.shape == (n, 10) and np.abs(got - want).max() <= 1e-5 * np.abs(want).max()
    assert export.check_onnx(data, model, variables, (28, 28, 1)) <= 1e-5


def test_a_conversion_that_fails_with_the_lax_plugins_only_is_tried_again_with_all(lenet, monkeypatch):
    """The first conversion imports jax2onnx's lax plugins only (its examples build networks at import);
    should a network need another plugin, the second attempt finds the tree marked not imported, so
    jax2onnx's ``to_onnx`` imports all of it (``import_all_plugins``), as it would alone."""
    from types import SimpleNamespace

    import jax2onnx
    from jax2onnx.plugins import plugin_system

    from zoo import export as ex

    seen = []

    def first_fails(*args, **kwargs):
        seen.append(plugin_system._already_imported_plugins)
        if len(seen) == 1:
            raise NotImplementedError("No plugins registered for primitive stack")
        return SimpleNamespace(SerializeToString=lambda: b"proto")

    monkeypatch.setattr(jax2onnx, "to_onnx", first_fails)
    monkeypatch.setattr(ex, "_plugins_imported", "lax")
    monkeypatch.setattr(plugin_system, "_already_imported_plugins", True)
    assert ex.onnx(*lenet, (28, 28, 1)) == b"proto"
    assert seen == [True, False] and ex._plugins_imported == "all"
    seen.clear()   # any other error is the converter's limit: reported at once, not tried again
    monkeypatch.setattr(ex, "_plugins_imported", "lax")
    monkeypatch.setattr(plugin_system, "_already_imported_plugins", True)
    monkeypatch.setattr(jax2onnx, "to_onnx", lambda *a, **k: seen.append(1) or 1 / 0)
    with pytest.raises(ValueError, match=r"\(ZeroDivisionError: division by zero\); --format stablehlo"):
        ex.onnx(*lenet, (28, 28, 1))
    assert seen == [1]


def test_without_the_extra_the_error_names_it(lenet, monkeypatch):
    monkeypatch.setitem(sys.modules, "jax2onnx", None)
    with pytest.raises(ImportError, match=r'pip install -e "\.\[export\]"'):
        export.onnx(*lenet, (28, 28, 1))


@pytest.mark.integration
def test_export_command_writes_the_file_and_its_description_and_never_overwrites(trained_lenet, tmp_path, capsys):
    workdir = trained_lenet[0]
    out = tmp_path / "lenet.onnx"
    assert export.main(["--workdir", str(workdir), "--format", "onnx", "--out", str(out)]) == 0
    assert "onnxruntime: max rel. diff" in capsys.readouterr().out
    meta = json.loads((tmp_path / "lenet.onnx.json").read_text())
    assert meta["input"] == {"name": "image", "layout": "NHWC", "dtype": "float32", "shape": ["batch", 28, 28, 1]}
    assert meta["class_names"] == [str(i) for i in range(10)] and meta["preprocessing"]["image_size"] == [28, 28]
    loaded = train.load(workdir)
    x = images((3, 28, 28, 1))
    got = ort.InferenceSession(out.read_bytes(), providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]
    want = np.asarray(jax.jit(lambda v, x: loaded.model.apply(v, x, train=False))(loaded.variables, x))
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()
    before = snapshot(tmp_path)
    assert export.main(["--workdir", str(workdir), "--format", "stablehlo", "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip().endswith("exists; choose another --out or pass --overwrite to replace it")
    assert snapshot(tmp_path) == before
    assert export.main(["--workdir", str(workdir), "--format", "stablehlo", "--out", str(out), "--overwrite"]) == 0
    np.testing.assert_allclose(np.asarray(jax.export.deserialize(out.read_bytes()).call(x)), want, rtol=1e-5,
                               atol=1e-5 * np.abs(want).max())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lenet.onnx", "lenet.onnx.json"]


# the three slowest exports (30-45 s each on 2 cores) run with -m slow: their JAX logits are checked
# against the same fixtures in the default run (test_convert), and the export path is the same one
SLOW_EXPORTS = {"inception_v3", "densenet121", "vgg11_bn"}


@pytest.mark.integration
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_EXPORTS else n
                                  for n in FIXTURES])
def test_onnx_gives_torchvisions_logits_on_the_parity_fixtures(name):
    d = np.load(FIXTURES_DIR / "parity" / f"{name}.npz")
    sd = recipe_state_dict(parse_shapes(d["keys"], d["shapes"]))
    model = convert.model_for_state_dict(name, sd)  # googlenet / inception_v3: aux_logits=False (the file's)
    variables = convert.from_torchvision(name, sd, model=model)
    x, logits = parity_input(), d["logits"]
    session = ort.InferenceSession(export.onnx(model, variables, x.shape[1:]), providers=["CPUExecutionProvider"])
    got = session.run(["logits"], {"image": x})[0]
    assert np.abs(got - logits).max() <= 1e-4 * np.abs(logits).max()


@pytest.mark.integration
def test_stablehlo_of_a_torchvision_network_reloads_with_identical_logits():
    d = np.load(FIXTURES_DIR / "parity" / "resnet18.npz")
    model = zoo.create("resnet18")
    variables = convert.from_torchvision("resnet18", recipe_state_dict(parse_shapes(d["keys"], d["shapes"])))
    x = parity_input()
    reloaded = jax.export.deserialize(export.stablehlo(model, variables, x.shape[1:]))
    got = np.asarray(reloaded.call(x))
    np.testing.assert_array_equal(got, np.asarray(jax.jit(export.logits_fn(model, variables))(x)))
    assert np.abs(got - d["logits"]).max() <= 1e-4 * np.abs(d["logits"]).max()


@pytest.mark.parametrize("args, message", [
    (["--format", "stablehlo", "--platforms", "cpu,gpu"],
     "--platforms=cpu,gpu: allowed values are cpu, cuda, rocm, tpu, comma-separated (NVIDIA GPUs are 'cuda', AMD GPUs 'rocm')"),
    (["--format", "stablehlo", "--platforms", "foo"], "--platforms=foo: allowed values are cpu, cuda, rocm, tpu"),
    (["--format", "onnx", "--platforms", "cpu"], "--platforms=cpu: only --format stablehlo takes platforms"),
])
def test_bad_platforms_are_one_error_line_before_anything_is_read(tmp_path, capsys, args, message):
    out = tmp_path / "model.stablehlo"
    assert export.main(["--workdir", str(tmp_path / "no-such-run"), "--out", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {message}")
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("out, message", [
    ("", "--out='': the file to write is needed (a path such as model.onnx, not a folder)"),   # was a traceback
    ("{tmp}/newdir/", "--out='{tmp}/newdir/': the file to write is needed"),   # once a file named newdir
    ("{tmp}", "--out='{tmp}': the file to write is needed"),
    ("{tmp}/afile/x.stablehlo", "--out='{tmp}/afile/x.stablehlo': {tmp}/afile is a file, not a folder"),
])
def test_an_out_that_is_no_file_path_is_one_error_line_before_anything_is_read(tmp_path, capsys, out, message):
    (tmp_path / "afile").write_text("mine")
    before = snapshot(tmp_path)
    args = ["--workdir", str(tmp_path / "no-such-run"), "--format", "stablehlo", "--out", out.format(tmp=tmp_path)]
    assert export.main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {message.format(tmp=tmp_path)}")
    assert snapshot(tmp_path) == before


def test_a_bfloat16_model_exports_float32_logits_and_onnx_refuses_it_in_one_line():
    """A bfloat16 run's StableHLO returned bfloat16 logits without a word, and ONNX failed with
    jax2onnx's TypeError traceback."""
    model = zoo.create("lenet5", dtype="bfloat16")
    variables = zoo.init(model, (28, 28, 1), rng=3)
    reloaded = jax.export.deserialize(export.stablehlo(model, variables, (28, 28, 1)))
    assert reloaded.out_avals[0].dtype == np.float32
    with pytest.raises(ValueError, match=r"^--format onnx: the model computes in bfloat16, which the ONNX converter "
                                         r"does not take; export it as --format stablehlo, or from a float32 run$"):
        export.onnx(model, variables, (28, 28, 1))


def test_a_network_the_onnx_converter_cannot_take_is_one_line_naming_stablehlo():
    """CIFAR ResNets (their option-A shortcut pads with the symbolic batch) failed with jax2onnx's
    InconclusiveDimensionOperation traceback, AlexNet / VGG below ~224 px with 'No plugins registered
    for primitive stack': the command caught neither. StableHLO exports them."""
    from zoo import export as ex

    model = zoo.create("resnet20")
    variables = zoo.init(model, (32, 32, 3))
    with pytest.raises(ValueError, match=r"^--format onnx: the converter \(jax2onnx\) cannot convert CifarResNet at "
                                         r"input \(32, 32, 3\) \(.*\); --format stablehlo exports every model"):
        ex.onnx(model, variables, (32, 32, 3))
    assert ex.stablehlo(model, variables, (32, 32, 3))


def test_an_out_whose_folder_or_sidecar_cannot_be_written_is_refused_before_anything_is_read(tmp_path, capsys,
                                                                                              monkeypatch):
    """A read-only folder failed after the export, naming the hidden ``.part``; with --overwrite, an
    ``OUT.json`` folder was refused only after the export work too."""
    from zoo import files

    args = ["--workdir", str(tmp_path / "no-such-run"), "--format", "stablehlo", "--overwrite"]
    (tmp_path / "m.stablehlo.json").mkdir()
    assert export.main([*args, "--out", str(tmp_path / "m.stablehlo")]) == 2
    assert capsys.readouterr().err == f"error: --out: {tmp_path / 'm.stablehlo.json'} is a folder\n"
    monkeypatch.setattr(files, "cannot_write_in", lambda folder: OSError(30, "Read-only file system"))
    assert export.main([*args, "--out", str(tmp_path / "ro" / "m.stablehlo")]) == 2
    assert capsys.readouterr().err == (f"error: --out's folder={str(tmp_path / 'ro')!r}: {tmp_path} cannot be written "
                                       f"(Read-only file system)\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.stablehlo.json"]
