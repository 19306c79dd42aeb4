""".pth files read without PyTorch (zoo.weights.pth): both torch.save formats give exactly the tensors
PyTorch wrote (files made by PyTorch 2.13), squeezenet1_0's give torchvision's logits, and files that
would run code are refused before any of it runs."""
import os
import pickle
import re
import zipfile
from pathlib import Path

import jax
import numpy as np
import pytest

import zoo
from fixtures.parity.recipe import parity_input, parse_shapes, recipe_state_dict
from helpers import FIXTURES, write_pth
from zoo import convert
from zoo.weights.pth import UnsafePickleError, read_pth

PRETRAINED = FIXTURES / "pretrained"
PWNED = Path("/tmp/zoo_pwned")
FORMATS = ("zip", "legacy")


def squeezenet_fixture():
    d = np.load(FIXTURES / "parity" / "squeezenet1_0.npz", allow_pickle=False)
    return parse_shapes(d["keys"], d["shapes"]), d["logits"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_both_formats_give_exactly_the_tensors_pytorch_wrote(fmt):
    shapes, _ = squeezenet_fixture()
    want = recipe_state_dict(shapes)  # the recipe PyTorch filled the fixture's state_dict with
    got = read_pth(PRETRAINED / f"squeezenet1_0-{fmt}.pth")
    assert list(got) == list(want)   # torchvision's key order
    for k, v in want.items():
        assert got[k].dtype == v.dtype and got[k].shape == v.shape and np.array_equal(got[k], v), k


@pytest.mark.parametrize("fmt", FORMATS)
def test_shared_storages_offsets_strides_and_dtypes(fmt):
    want = np.load(PRETRAINED / "views.npz")  # what PyTorch itself reads back
    got = read_pth(PRETRAINED / f"views-{fmt}.pth")
    assert list(got) == ["base", "slice", "transposed", "bf16", "count", "half"]
    for k in got:
        assert got[k].shape == want[k].shape and np.array_equal(np.asarray(got[k], np.float64), want[k]), k
    assert got["bf16"].dtype.name == "bfloat16" and got["count"].dtype == np.int64 and got["count"].shape == ()
    assert got["transposed"].flags.c_contiguous and got["half"].dtype == np.float16


@pytest.mark.skipif("squeezenet1_0" not in zoo.list_models(), reason="the SqueezeNet family is not registered yet")
@pytest.mark.parametrize("fmt", FORMATS)
def test_squeezenet_files_give_torchvisions_logits(fmt):
    _, logits = squeezenet_fixture()
    model, variables = zoo.load_pretrained("squeezenet1_0", file=PRETRAINED / f"squeezenet1_0-{fmt}.pth")
    out = np.asarray(jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, parity_input()))
    assert np.abs(out - logits).max() <= 1e-4 * np.abs(logits).max()


@pytest.mark.parametrize("fmt", FORMATS)
def test_malicious_files_raise_and_run_nothing(fmt):
    PWNED.unlink(missing_ok=True)
    path = PRETRAINED / f"malicious-{fmt}.pth"
    with pytest.raises(UnsafePickleError, match=r"refused to load posix\.system"):
        read_pth(path)
    with pytest.raises(ValueError, match="asks for code to run"):  # the same through zoo.convert / load_pretrained
        convert.load_state_dict(path)
    with pytest.raises(ValueError, match="asks for code to run"):
        zoo.load_pretrained("resnet18", file=path)
    assert not PWNED.exists()


def test_a_pickle_naming_any_other_global_is_refused(tmp_path):
    for module, name in [("builtins", "eval"), ("torch", "load"), ("numpy", "ndarray"), ("collections", "deque")]:
        path = tmp_path / "x.pth"
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("archive/data.pkl", pickle.PROTO + b"\x02" + pickle.GLOBAL + f"{module}\n{name}\n".encode()
                       + pickle.STOP)
        with pytest.raises(UnsafePickleError, match=f"refused to load {module}.{name}"):
            read_pth(path)


def test_written_files_round_trip_and_load_a_model(tmp_path):
    """The test helper's writer (PyTorch reads its files) and the reader agree, and a ResNet state_dict
    written as .pth converts: torchvision's logits of the parity fixture."""
    d = np.load(FIXTURES / "parity" / "resnet18.npz")
    sd = recipe_state_dict(parse_shapes(d["keys"], d["shapes"]))
    path = write_pth(tmp_path / "r18.pth", sd, legacy=True)
    model, variables = zoo.load_pretrained("resnet18", file=path)
    out = np.asarray(jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, parity_input()))
    assert np.abs(out - d["logits"]).max() <= 1e-4 * np.abs(d["logits"]).max()


def test_damaged_files_fail_clearly(tmp_path):
    sd = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "n": np.zeros((), np.int64)}
    legacy = write_pth(tmp_path / "legacy.pth", sd, legacy=True)
    data = legacy.read_bytes()
    (tmp_path / "short.pth").write_bytes(data[:-8])  # the last storage cut short
    with pytest.raises(pickle.UnpicklingError, match="truncated"):
        read_pth(tmp_path / "short.pth")
    z = write_pth(tmp_path / "zipped.pth", sd).read_bytes()
    (tmp_path / "cut.pth").write_bytes(z[: len(z) // 2])   # a torch.save zip without its directory
    with pytest.raises(pickle.UnpicklingError, match=r"cut\.pth: not a readable PyTorch weight file \(BadZipFile: a "
                                                     r"truncated or damaged zip archive"):
        read_pth(tmp_path / "cut.pth")
    (tmp_path / "text.pth").write_bytes(b"not a weight file")
    with pytest.raises(pickle.UnpicklingError, match="not a readable PyTorch weight file"):
        read_pth(tmp_path / "text.pth")
    with pytest.raises(ValueError, match="not a readable PyTorch weight file"):
        convert.load_state_dict(tmp_path / "text.pth")
    # a tensor whose size and stride reach past its storage is refused, never read out of bounds
    z = write_pth(tmp_path / "z.pth", {"w": np.arange(4, dtype=np.float32)})
    with zipfile.ZipFile(z) as src:
        members = {n: src.read(n) for n in src.namelist()}
    members["archive/data/0"] = members["archive/data/0"][:8]  # 2 of the 4 floats
    with zipfile.ZipFile(tmp_path / "oob.pth", "w") as dst:
        for n, b in members.items():
            dst.writestr(n, b)
    with pytest.raises(pickle.UnpicklingError, match="storage holds 8 bytes, 16 expected"):
        read_pth(tmp_path / "oob.pth")
    size_and_stride = b"(J\x04\x00\x00\x00t(J\x01\x00\x00\x00t"   # (4,), (1,)
    assert members["archive/data.pkl"].count(size_and_stride) == 1
    members["archive/data/0"] = np.arange(4, dtype=np.float32).tobytes()
    members["archive/data.pkl"] = members["archive/data.pkl"].replace(size_and_stride, size_and_stride[:9] + b"\x02"
                                                                      + size_and_stride[10:])  # stride 2: 0, 2, 4, 6
    with zipfile.ZipFile(tmp_path / "stride.pth", "w") as dst:
        for n, b in members.items():
            dst.writestr(n, b)
    with pytest.raises(pickle.UnpicklingError, match="reads past its storage of 4 elements"):
        read_pth(tmp_path / "stride.pth")
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".part")]


def test_containers_nested_past_the_stack_are_refused_in_one_line(tmp_path):
    """A legacy file holding 50,000 nested lists (raw pickle opcodes) was a RecursionError traceback; the same
    object in a zip file was already "holds no state_dict"."""
    def record(obj):
        return pickle.dumps(obj, protocol=2)

    n = 50_000
    deep = pickle.PROTO + b"\x02" + pickle.EMPTY_LIST * n + pickle.APPEND * (n - 1) + pickle.STOP
    path = tmp_path / "deep.pth"
    path.write_bytes(record(0x1950A86A20F9469CFC6C) + record(1001) + record({}) + deep + record([]))
    message = (rf"^{re.escape(str(path))}: not a readable PyTorch weight file \(containers nested too deeply for a "
               rf"state_dict\)$")
    with pytest.raises(pickle.UnpicklingError, match=message):
        read_pth(path)
    with pytest.raises(ValueError, match=message):
        convert.load_state_dict(path)
