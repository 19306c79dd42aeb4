"""Published weights on a labelled set (train/published.py, python -m train.evaluate --pretrained): the
plumbing on a generated folder whose classes are chosen from the model's own top-5 answers, so that the
expected top-1 / top-5 are known; labels mapped by ImageNet class name or by order; config overrides.
(In process the tests call train.published.main: importing the train.evaluate entry point would
replace the train.evaluate function with that module.)"""
import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import zoo
from fixtures.parity.recipe import recipe_state_dict
from helpers import ROOT, child_env, write_pth
from train import published
from zoo import bundle, convert
from zoo.predict import top_classes
from zoo.weights import catalogue

SMALL = "shufflenet_v2_x0_5"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """SMALL's recipe weights registered as TEST (acc@1 50, acc@5 75), and an ImageNet-style folder of 6
    generated images: 4 in the folder of their top-1 class, 2 in the folder of a class outside their
    top-5, one of them in a folder named with '_' for ' '."""
    root = tmp_path_factory.mktemp("published")
    path = write_pth(root / "small.pth", recipe_state_dict(convert.state_dict_shapes(SMALL)))
    zoo.register_weights(SMALL, "TEST", url=path.as_uri(), sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
                         acc1=50.0, acc5=75.0, resize_size=80, crop_size=64)  # small inputs compile fast
    rng = np.random.default_rng(1)
    images = [(rng.random((150 + 10 * i, 200, 3)) * 255).astype(np.uint8) for i in range(6)]
    tops = top_classes(bundle.load(SMALL, weights="TEST", cache_dir=root / "cache"), images, k=5)
    names = catalogue.imagenet_classes()
    data = root / "images"
    for i, (image, top) in enumerate(zip(images, tops)):
        if i < 4:
            cls = top[0]["class"]
        else:  # a class none of its top-5 is: 'tiger shark', else 'great white shark'
            cls = next(n for n in ("tiger shark", "great white shark") if n not in [c["class"] for c in top])
        (data / cls.replace(" ", "_")).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(data / cls.replace(" ", "_") / f"{i}.png")
    assert all(n in names for n in (c.replace("_", " ") for c in (p.name for p in data.iterdir())))
    yield root, data
    catalogue.unregister(SMALL, "TEST")


@pytest.mark.integration
def test_top1_and_top5_on_a_folder_with_imagenet_class_names(folder, capsys):
    root, data = folder
    rc = published.main(["--pretrained", f"{SMALL}:TEST", f"--config.data.name=folder:{data}", "--config.eval_batch_size=4",
               "--cache_dir", str(root / "cache"), "--output_dir", str(root / "out")])
    out = capsys.readouterr().out.strip().splitlines()
    assert rc == 0
    assert out[-2] == (f"{SMALL} TEST on folder:{data} [all] (6 images): top-1 66.667%  top-5 66.667%  "
                       f"(catalogue: acc@1 50.000%, acc@5 75.000%)")
    tag = hashlib.sha256(f"folder:{data}".encode()).hexdigest()[:8]   # another dataset, another report
    [path] = (root / "out").glob(f"pretrained_{SMALL}_TEST_folder-*-{tag}_all.json")
    assert out[-1] == f"report: {path}"
    report = json.loads(path.read_text())
    assert report["count"] == 6 and report["preprocessing"]["crop_fraction"] == 0.8
    assert report["classes_mapped"] == "by name"


def test_labels_map_by_name_or_by_order():
    weights = ["tench", "goldfish", "great white shark", "tiger shark"]
    labels, how = published.label_map(["Tiger_Shark", "tench"], weights)
    assert list(labels) == [3, 0] and how == "by name"
    labels, how = published.label_map(["n01", "n02", "n03", "n04"], weights)
    assert list(labels) == [0, 1, 2, 3] and how == "by order"
    with pytest.raises(ValueError, match=r"1 of the dataset's 2 classes are not classes of the weights \(e.g. 'cat'\)"):
        published.label_map(["cat", "tench"], weights)


def test_names_that_match_in_part_or_by_case_only_are_not_mapped_by_order():
    """Once: one misspelt folder of an equal count fell back to the folders' order without a word (top-1
    100% -> 0%); 'Cardigan' (the dog, 264) was scored as 'cardigan' (the sweater, 474)."""
    weights = ["tench", "goldfish", "great white shark", "tiger shark"]
    with pytest.raises(ValueError, match=r"^1 of the dataset's 4 classes are not classes of the weights \(e.g. "
                                         r"'tenchh'\); .* by order only when no class is named like the weights'"):
        published.label_map(["goldfish", "great_white_shark", "tenchh", "tiger_shark"], weights)
    imagenet = catalogue.imagenet_classes()
    labels, how = published.label_map(["Cardigan", "cardigan", "tench"], imagenet)
    assert list(labels) == [imagenet.index("Cardigan"), imagenet.index("cardigan"), 0] == [264, 474, 0]
    assert how == "by name"
    with pytest.raises(ValueError, match=r"ambiguous without their exact case: 'CARDIGAN' \('Cardigan' or 'cardigan'\)"):
        published.label_map(["CARDIGAN", "tench"], imagenet)
    with pytest.raises(ValueError, match=r"the same class of the weights: 'Tench' and 'tench'"):
        published.label_map(["tench", "Tench"], imagenet)


def test_bad_arguments_get_one_line(folder, capsys):
    root, data = folder
    assert published.main(["--pretrained", f"{SMALL}:TEST", "--config.data.nme=x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown config field 'data.nme'; closest: data.name") and len(err.splitlines()) == 1
    assert published.main(["--pretrained", f"{SMALL}:TEST", "--config.eval_batch_size=many"]) == 2
    assert capsys.readouterr().err.strip() == "error: --config.eval_batch_size='many': expected an integer"
    assert published.main(["--pretrained", "vgg16:IMAGENET1K_FEATURES", f"--config.data.name=folder:{data}"]) == 2
    assert "has no classifier to evaluate" in capsys.readouterr().err
    assert published.main(["--pretrained", f"{SMALL}:V7", f"--config.data.name=folder:{data}"]) == 2
    assert capsys.readouterr().err.startswith(f"error: --pretrained {SMALL}:V7: weights='V7': {SMALL} has ")
    cfg, rest = published.config_from_args(["--config.data.cache=false", "--config.data.name=folder:/x",
                                            "--config.eval_batch_size", "3", "--pretrained", "m"])
    assert rest == ["--pretrained", "m"]
    assert (cfg.data.cache, cfg.data.name, cfg.eval_batch_size, cfg.data.eval_split) == \
        (False, "folder:/x", 3, "validation")


def test_fields_that_pretrained_does_not_use_are_refused_naming_them(capsys):
    """Every --config.* field was taken and most were ignored: a bf16, 64 px or other-model evaluation
    silently became the weights' fp32, 224 px one."""
    data = "/nonexistent/imgs"   # refused before anything is read
    args = ["--pretrained", "squeezenet1_0", f"--config.data.name=folder:{data}", "--config.model=vgg16",
            "--config.precision=bfloat16", "--config.data.image_size=64", "--config.data.interpolation=bicubic",
            "--config.num_devices=1", "--config.model_kwargs.dropout=0.9", "--config.eval_batch_size=4"]
    assert published.main(args) == 2
    err = capsys.readouterr().err
    assert err == ("error: --config.model, --config.precision, --config.data.image_size, --config.data.interpolation, "
                   "--config.num_devices, --config.model_kwargs.dropout: not used by --pretrained (the model, its "
                   "input size, preprocessing and precision are the weights'); it uses --config.data.* (not "
                   "data.image_size, data.interpolation, data.augment, data.train_resize), --config.eval_batch_size "
                   "and --config.parallelism\n")
    cfg, _ = published.config_from_args([f"--config.data.name=folder:{data}", "--config.data.num_workers=0",
                                         "--config.parallelism=shard_map", "--config.eval_batch_size=4"])
    assert (cfg.data.num_workers, cfg.parallelism, cfg.eval_batch_size) == (0, "shard_map", 4)


@pytest.mark.integration
def test_the_evaluate_command_dispatches_pretrained_and_workdir(tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "train.evaluate", *args], capture_output=True, text=True,
                              cwd=ROOT, env=child_env(), timeout=300)

    p = run("--pretrained", "vgg16:IMAGENET1K_FEATURES", f"--config.data.name=folder:{tmp_path}")
    assert p.returncode == 2 and p.stderr.strip().endswith("vgg16 IMAGENET1K_FEATURES has no classifier to evaluate "
                                                           "(features only)")
    p = run("--workdir", str(tmp_path / "none"))
    assert p.returncode == 2 and "error: no checkpoints in" in p.stderr


@pytest.mark.integration
def test_outputs_are_checked_first_and_a_large_batch_is_fitted_to_the_set(folder, capsys):
    """--output_dir '' wrote into the current directory, a file as --output_dir failed after the whole
    evaluation with a bare errno; eval_batch_size=100000 padded 6 images to a 56 GiB batch."""
    root, data = folder
    (root / "afile").write_text("")
    for value, why in [("", "empty; name a folder"), (str(root / "afile"), "is a file, not a folder")]:
        assert published.main(["--pretrained", f"{SMALL}:TEST", f"--config.data.name=folder:{data}",
                               "--cache_dir", str(root / "cache"), "--output_dir", value]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: --output_dir={value!r}: ") and why in err and len(err.splitlines()) == 1
    assert published.main(["--pretrained", f"{SMALL}:TEST", f"--config.data.name=folder:{data}",
                           "--config.eval_batch_size=100000", "--cache_dir", str(root / "cache")]) == 0
    assert "(6 images): top-1 66.667%" in capsys.readouterr().out
    assert published.main(["--pretrained", f"{SMALL}:TEST", f"--config.data.name=folder:{data}",
                           "--config.eval_batch_size=0"]) == 2
    assert capsys.readouterr().err.strip() == "error: eval_batch_size=0: must be an int >= 1"
