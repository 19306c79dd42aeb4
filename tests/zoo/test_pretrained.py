"""zoo.load_pretrained by tag (zoo/pretrained.py, zoo/weights/cache.py): a registered entry served by a
local HTTP server is downloaded, checked, read without PyTorch, converted and cached; a second load
reads the cached conversion (no download, no conversion); the head rule, the options published weights
need, and the errors."""
import hashlib
import logging

import numpy as np
import pytest

import zoo
from fixtures.parity.recipe import recipe_state_dict
from helpers import file_server, write_pth
from zoo import convert
from zoo.weights import cache, catalogue

SMALL = "shufflenet_v2_x0_5"  # 1.4M parameters


@pytest.fixture(scope="module")
def small():
    """(state_dict, .pth bytes, sha256) of a torchvision-layout SMALL by the parity recipe."""
    import tempfile
    from pathlib import Path

    sd = recipe_state_dict(convert.state_dict_shapes(SMALL))
    with tempfile.TemporaryDirectory() as d:
        data = write_pth(Path(d) / "s.pth", sd).read_bytes()
    return sd, data, hashlib.sha256(data).hexdigest()


@pytest.fixture
def registered(small):
    yield lambda url, **meta: zoo.register_weights(SMALL, "TEST", url=url, sha256=small[2], **meta)
    catalogue._USER.clear()


def assert_loaded(variables, sd, model=None):
    back = convert.to_torchvision(SMALL, variables, model=model)
    for k, v in sd.items():
        if not k.endswith("num_batches_tracked") and not (model is not None and k.startswith("fc.")):
            assert np.array_equal(back[k], v), k


def test_load_by_tag_then_from_the_converted_cache(tmp_path, small, registered, monkeypatch, caplog):
    sd, data, sha = small
    with file_server({"small.pth": data}) as s:
        e = registered(f"{s.url}/small.pth")
        model, variables = zoo.load_pretrained(SMALL, "TEST", cache_dir=tmp_path, progress=False)
        assert s.requests == ["small.pth"]
    assert model.num_classes == 1000
    assert_loaded(variables, sd)
    assert cache.converted_path(e, tmp_path).is_file() and (tmp_path / "weights" / f"small-{sha[:8]}.pth").is_file()

    def refuse(*args, **kwargs):
        raise AssertionError("converted again")

    monkeypatch.setattr(convert, "from_torchvision", refuse)   # the second load neither converts ...
    monkeypatch.setattr(convert, "load_state_dict", refuse)    # ... nor reads the source (server stopped too)
    with caplog.at_level(logging.INFO, logger="zoo"):
        model2, again = zoo.load_pretrained(SMALL, "TEST", cache_dir=tmp_path)
    assert "converted weights from the cache" in caplog.text
    assert_loaded(again, sd)


def test_another_class_count_gets_a_fresh_head(tmp_path, small, registered, caplog):
    sd, data, _ = small
    registered((tmp_path / "small.pth").as_uri())
    (tmp_path / "small.pth").write_bytes(data)
    with caplog.at_level(logging.INFO, logger="zoo"):
        model, variables = zoo.load_pretrained(SMALL, "TEST", num_classes=10, cache_dir=tmp_path / "c", progress=False)
    assert model.num_classes == 10 and variables["params"]["fc"]["kernel"].shape == (1024, 10)
    assert "head fc: 1000 -> 10 classes, freshly initialised" in caplog.text
    assert_loaded(variables, sd, model=model)


def _truncated(raw: bytes) -> bytes:
    return raw[:1000]


def _nan_inside(raw: bytes) -> bytes:
    """Same length, still readable, tensors overwritten: only the checksum in the metadata finds it."""
    raw = bytearray(raw)
    start = 8 + int.from_bytes(raw[:8], "little") + 64   # past safetensors' header
    raw[start:start + 4096] = np.full(1024, np.nan, np.float32).tobytes()
    return bytes(raw)


@pytest.mark.parametrize("damage, warned", [(_truncated, "unreadable"),
                                            (_nan_inside, "damaged (its tensors do not match their sha256)")])
def test_a_damaged_conversion_is_converted_again(tmp_path, small, registered, caplog, damage, warned):
    sd, data, _ = small
    (tmp_path / "small.pth").write_bytes(data)
    e = registered((tmp_path / "small.pth").as_uri())
    zoo.load_pretrained(SMALL, "TEST", cache_dir=tmp_path / "c", progress=False)
    path = cache.converted_path(e, tmp_path / "c")
    path.write_bytes(damage(path.read_bytes()))
    with caplog.at_level(logging.WARNING, logger="zoo"):
        _, variables = zoo.load_pretrained(SMALL, "TEST", cache_dir=tmp_path / "c", progress=False)
    assert warned in caplog.text and "converting again" in caplog.text
    assert_loaded(variables, sd)
    assert cache.read(e, tmp_path / "c") is not None  # rewritten whole


def test_options_the_weights_need_and_the_callers_own(tmp_path, small, registered):
    (tmp_path / "small.pth").write_bytes(small[1])
    registered((tmp_path / "small.pth").as_uri(), model_overrides={"bn_epsilon": 1e-3})
    model, _ = zoo.load_pretrained(SMALL, "TEST", cache_dir=tmp_path / "c", progress=False)
    assert model.bn_epsilon == 1e-3
    model, _ = zoo.load_pretrained(SMALL, "TEST", cache_dir=tmp_path / "c", progress=False, bn_epsilon=1e-4)
    assert model.bn_epsilon == 1e-4


def test_published_googlenet_and_inception_take_torchvisions_options():
    """torchvision's builders: transform_input=True with weights; aux_logits defaults to False for
    googlenet (its weights' aux1 / aux2 are deleted) and True for inception_v3."""
    assert dict(catalogue.entry("googlenet").model_overrides) == {"transform_input": True, "aux_logits": False}
    assert dict(catalogue.entry("inception_v3").model_overrides) == {"transform_input": True, "aux_logits": True}
    assert catalogue.entry("resnet50").model_overrides == ()


def test_errors_name_what_is_allowed(tmp_path):
    with pytest.raises(ValueError, match="give weights='IMAGENET1K_V1' or file=, not both"):
        zoo.load_pretrained("resnet18", "IMAGENET1K_V1", file=tmp_path / "x.pth")
    with pytest.raises(ValueError, match="weights=None: a tag"):
        zoo.load_pretrained("resnet18", None)
    with pytest.raises(ValueError, match="weights='V9': resnet18 has IMAGENET1K_V1 or 'DEFAULT'"):
        zoo.load_pretrained("resnet18", "V9")
    with pytest.raises(ValueError, match="no torchvision counterpart"):
        zoo.load_pretrained("lenet5")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        zoo.load_pretrained("resnet18", file=tmp_path / "missing.pth")
    with pytest.raises(ValueError, match=r"file='': the path of a .pth or .safetensors file"):
        zoo.load_pretrained("resnet18", file="")


def test_a_cache_that_cannot_store_the_conversion_still_loads(tmp_path, small, registered, caplog):
    """A shared cache filled by someone else, where this user cannot write: the checked weights load."""
    sd, data, _ = small
    (tmp_path / "small.pth").write_bytes(data)
    registered((tmp_path / "small.pth").as_uri())
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "converted").write_text("")   # cannot be a folder (as root, permissions cannot stop us)
    with caplog.at_level(logging.WARNING, logger="zoo"):
        _, variables = zoo.load_pretrained(SMALL, "TEST", cache_dir=tmp_path / "c", progress=False)
    assert "not cached" in caplog.text and "converted again at each load" in caplog.text
    assert_loaded(variables, sd)


def test_a_googlenet_file_says_transform_input_stays_off(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="zoo"), pytest.raises(FileNotFoundError):
        zoo.load_pretrained("googlenet", file=tmp_path / "googlenet-1378be20.pth")
    assert "transform_input=False" in caplog.text and "transform_input=True" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="zoo"), pytest.raises(FileNotFoundError):
        zoo.load_pretrained("googlenet", file=tmp_path / "googlenet-1378be20.pth", transform_input=True)
    assert "transform_input" not in caplog.text


def test_a_cache_that_fills_while_storing_the_conversion_still_loads(tmp_path, small, registered, caplog,
                                                                      monkeypatch):
    """safetensors reports a full disk as its own SafetensorError (not an OSError): the load failed with
    its traceback though the weights were downloaded, checked and converted."""
    import safetensors.numpy
    from safetensors import SafetensorError

    def full(*args, **kwargs):
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    sd, data, _ = small
    (tmp_path / "small.pth").write_bytes(data)
    e = registered((tmp_path / "small.pth").as_uri())
    monkeypatch.setattr(safetensors.numpy, "save_file", full)
    with caplog.at_level(logging.WARNING, logger="zoo"):
        _, variables = zoo.load_pretrained(SMALL, "TEST", cache_dir=tmp_path / "c", progress=False)
    assert "not cached (Error while serializing: I/O error: No space left on device" in caplog.text
    assert "converted again at each load" in caplog.text
    assert_loaded(variables, sd)
    assert list(cache.converted_path(e, tmp_path / "c").parent.iterdir()) == []   # no temporary file left
