"""The weight catalogue (zoo.weights.catalogue): every published entry as torchvision 0.28 describes it
(tests/fixtures/torchvision_weights_meta.json: its DEFAULT choice and transforms), every catalogue model
registered with exactly the published size, user entries, and the model table's weights column."""
import json

import pytest

import zoo
from helpers import inner_loop_sample, FIXTURES, abstract_variables, traced
from zoo.__main__ import weights_cell
from zoo.summary import param_count
from zoo.weights import catalogue

TORCHVISION = json.loads((FIXTURES / "torchvision_weights_meta.json").read_text())["entries"]
CATALOGUE_MODELS = sorted({e["model"] for e in TORCHVISION})


def test_the_catalogue_has_torchvisions_60_entries_of_49_models():
    assert sum(len(v) for v in catalogue.published().values()) == 60
    assert sorted(catalogue.published()) == CATALOGUE_MODELS and len(CATALOGUE_MODELS) == 49


@pytest.mark.parametrize("tv", TORCHVISION, ids=lambda tv: f"{tv['model']}-{tv['weights']}")
def test_entries_and_default_are_torchvisions(tv):
    e = catalogue.entry(tv["model"], tv["weights"])
    assert (e.crop_size, e.resize_size, e.interpolation) == (tv["crop_size"], tv["resize_size"], tv["interpolation"])
    assert e.mean == pytest.approx(tv["mean"]) and e.std == pytest.approx(tv["std"])
    assert e.num_params == tv["num_params"] and e.categories == tv["categories"]
    assert e.default == tv["default"]
    if tv["default"]:
        assert catalogue.entry(tv["model"], "DEFAULT") == e
    assert e.url.startswith(catalogue.TORCHVISION_BASE) and e.url.endswith(".pth") and e.sha256 in e.filename


@pytest.mark.parametrize("name", inner_loop_sample(CATALOGUE_MODELS))
def test_every_catalogue_model_is_registered_with_the_published_size(name):
    """The whole catalogue: each model exists, converts torchvision layouts, and the model its weights
    load into (torchvision's options for them, e.g. googlenet without aux heads) has exactly the
    published parameter count."""
    assert name in zoo.list_models(), f"{name} has published weights but is not registered"
    info = zoo.model_info(name)
    assert info.weights_layout == "torchvision"
    for e in info.weights:
        options = {k: v for k, v in e.model_overrides if k in info.options()}
        if options or e.categories not in (0, info.num_classes):
            variables = abstract_variables(name, num_classes=e.categories or info.num_classes, **options)
        else:
            variables = traced(name)[1]  # the default model, traced once per test process (the registry tests too)
        assert param_count(variables) == e.num_params, e.tag


def test_model_info_lists_the_weights_with_their_figures():
    tags = {e.tag: e for e in zoo.model_info("resnet50").weights}
    assert list(tags) == ["IMAGENET1K_V1", "IMAGENET1K_V2"] and tags["IMAGENET1K_V2"].default
    v2 = tags["IMAGENET1K_V2"]
    assert (v2.acc1, v2.acc5, v2.resize_size, v2.crop_size) == (80.858, 95.434, 232, 224)
    assert v2.summary() == "IMAGENET1K_V2 (default): acc@1 80.858, acc@5 95.434, resize 232 / crop 224 bilinear"
    assert zoo.model_info("lenet5").weights == ()
    assert weights_cell("resnet50") == "V1, V2*" and weights_cell("vgg16") == "V1*, FEATURES"
    assert weights_cell("lenet5") == "-"


def test_imagenet_class_names():
    names = catalogue.imagenet_classes()
    assert len(names) == len(set(names)) == 1000
    assert (names[0], names[1], names[281], names[999]) == ("tench", "goldfish", "tabby", "toilet tissue")
    assert catalogue.entry("resnet18").class_names == names
    assert catalogue.entry("vgg16", "IMAGENET1K_FEATURES").class_names is None  # no usable classifier


def test_unknown_tags_and_models_name_what_exists():
    with pytest.raises(ValueError, match=r"weights='V3': resnet50 has IMAGENET1K_V1, IMAGENET1K_V2 or 'DEFAULT'"):
        catalogue.entry("resnet50", "V3")
    with pytest.raises(ValueError, match="no weights are catalogued for 'lenet5'"):
        catalogue.entry("lenet5")
    assert catalogue.parse_spec("resnet50") == ("resnet50", "DEFAULT")
    assert catalogue.parse_spec("resnet50:IMAGENET1K_V1") == ("resnet50", "IMAGENET1K_V1")
    with pytest.raises(ValueError, match="MODEL or MODEL:TAG"):
        catalogue.parse_spec("resnet50:a:b")


def test_torchvisions_qualified_weight_names_are_taken():
    """torchvision's ``WeightsEnum.verify`` takes "ResNet50_Weights.IMAGENET1K_V2" for resnet50; the enum
    names below are torchvision's (models/resnet.py, mobilenetv3.py, resnet.py's ResNeXt / Wide ResNet)."""
    assert catalogue.entry("resnet50", "ResNet50_Weights.IMAGENET1K_V1").tag == "IMAGENET1K_V1"
    assert catalogue.entry("resnet50", "ResNet50_Weights.DEFAULT").tag == "IMAGENET1K_V2"
    assert catalogue.entry("mobilenet_v3_large", "MobileNet_V3_Large_Weights.IMAGENET1K_V1").tag == "IMAGENET1K_V1"
    assert catalogue.entry("resnext50_32x4d", "ResNeXt50_32X4D_Weights.IMAGENET1K_V2").tag == "IMAGENET1K_V2"
    assert catalogue.entry("wide_resnet50_2", "Wide_ResNet50_2_Weights.DEFAULT").tag == "IMAGENET1K_V2"
    with pytest.raises(ValueError, match=r"^weights='ResNet18_Weights.IMAGENET1K_V1': ResNet18_Weights are another "
                                         r"model's weights; resnet50 has IMAGENET1K_V1, IMAGENET1K_V2 or 'DEFAULT'"):
        catalogue.entry("resnet50", "ResNet18_Weights.IMAGENET1K_V1")
    with pytest.raises(ValueError, match=r"^weights='ResNet50_Weights.V9': resnet50 has"):
        catalogue.entry("resnet50", "ResNet50_Weights.V9")


@pytest.fixture
def user_entries():
    yield
    catalogue._USER.clear()


def test_register_weights_adds_an_entry_for_this_process(user_entries):
    e = zoo.register_weights("resnet18", "FLOWERS", url="https://models.example.com/r18-flowers.safetensors",
                             sha256="AB" * 32, categories=["daisy", "rose"], resize_size=288, crop_size=256,
                             interpolation="bicubic", acc1=91.5)
    assert e.sha256 == "ab" * 32 and e.full_hash and e.filename == "r18-flowers.safetensors"
    assert e.class_names == ("daisy", "rose") and e.categories == 2 and not e.default and not e.published
    assert [x.tag for x in zoo.model_info("resnet18").weights] == ["IMAGENET1K_V1", "FLOWERS"]
    assert catalogue.entry("resnet18").tag == "IMAGENET1K_V1"  # the published DEFAULT stays
    again = zoo.register_weights("resnet18", "FLOWERS", url="file:///srv/r18.pth", sha256="12345678")
    assert catalogue.entry("resnet18", "FLOWERS") == again and not again.full_hash
    signed = zoo.register_weights("resnet18", "HUB", url="https://hub.example.com/r18.safetensors?download=true",
                                  sha256="12345678")
    assert signed.filename == "r18.safetensors"   # as torch.hub: the name from the URL's path


def test_a_model_without_published_weights_defaults_to_its_first_user_entry(user_entries, monkeypatch):
    monkeypatch.setattr(catalogue, "published", lambda: {})
    zoo.register_weights("resnet18", "A", url="file:///a.pth", sha256="aaaaaaaa")
    zoo.register_weights("resnet18", "B", url="file:///b.pth", sha256="bbbbbbbb")
    assert catalogue.entry("resnet18", "DEFAULT").tag == "A"
    assert [e.default for e in catalogue.entries("resnet18")] == [True, False]


@pytest.mark.parametrize("kwargs, message", [
    (dict(url="ftp://x/y.pth", sha256="a" * 64), "url='ftp://x/y.pth': an http"),
    (dict(url="https://x/", sha256="a" * 64), "an http"),
    (dict(url="https://x/12345?id=7", sha256="a" * 64), r"url='https://x/12345\?id=7': its file name '12345' must end "
                                                       r"in one of \.safetensors, \.pth, \.pt, \.bin"),
    (dict(url="https://x/y.pth", sha256="xyz"), "sha256='xyz': the file's sha256 in hex"),
    (dict(url="https://x/y.pth", sha256="abc"), "sha256='abc'"),
    (dict(url="https://x/y.pth", sha256="a" * 64, acc=1), r"unknown field\(s\) acc; allowed: categories"),
    (dict(url="https://x/y.pth", sha256="a" * 64, interpolation="nearest"), "interpolation='nearest': allowed"),
    # once accepted: a negative class count, a zero crop, two means for three stds
    (dict(url="https://x/y.pth", sha256="a" * 64, categories=-3), r"categories=-3: the class count \(0: no usable"),
    (dict(url="https://x/y.pth", sha256="a" * 64, categories="10"), r"categories='10': the class count"),
    (dict(url="https://x/y.pth", sha256="a" * 64, crop_size=0), r"crop_size=0: must be an integer >= 1 \(pixels\)"),
    (dict(url="https://x/y.pth", sha256="a" * 64, resize_size=2.5), r"resize_size=2\.5: must be an integer >= 1"),
    (dict(url="https://x/y.pth", sha256="a" * 64, mean=(0.5, 0.5)),
     r"mean=\(0\.5, 0\.5\) and std=\(0\.229, 0\.224, 0\.225\): one number per input channel each"),
    (dict(url="https://x/y.pth", sha256="a" * 64, std=(0.2, 0.2, 0.0)), r"std=\(0\.2, 0\.2, 0\.0\): one number per "
                                                                        r"input channel \(> 0\)$"),
    (dict(url="https://x/y.pth", sha256="a" * 64, mean=0.5), r"mean=0\.5: one number per input channel$"),
])
def test_register_weights_refuses_bad_entries(user_entries, kwargs, message):
    with pytest.raises(ValueError, match=message):
        zoo.register_weights("resnet18", "T", **kwargs)


def test_register_weights_refuses_published_tags_and_models_without_a_torchvision_layout(user_entries):
    with pytest.raises(ValueError, match="resnet18 IMAGENET1K_V1 is torchvision's published entry"):
        zoo.register_weights("resnet18", "IMAGENET1K_V1", url="https://x/y.pth", sha256="a" * 64)
    with pytest.raises(ValueError, match="tag='DEFAULT'"):
        zoo.register_weights("resnet18", "DEFAULT", url="https://x/y.pth", sha256="a" * 64)
    with pytest.raises(ValueError, match="lenet5 .* has no torchvision counterpart"):
        zoo.register_weights("lenet5", "MINE", url="https://x/y.pth", sha256="a" * 64)
    with pytest.raises(ValueError, match="unknown model name 'resnet19'"):
        zoo.register_weights("resnet19", "MINE", url="https://x/y.pth", sha256="a" * 64)
    assert catalogue._USER == {}
