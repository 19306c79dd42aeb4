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
    out = capsys.readouterr().out.strip().splitlines()[-1]
    assert rc == 0
    assert out == (f"{SMALL} TEST on folder:{data} [all] (6 images): top-1 66.667%  top-5 66.667%  "
                   f"(catalogue: acc@1 50.000%, acc@5 75.000%)")
    report = json.loads((root / "out" / f"pretrained_{SMALL}_TEST_all.json").read_text())
    assert report["count"] == 6 and report["preprocessing"]["crop_fraction"] == 0.8


def test_labels_map_by_name_or_by_order():
    weights = ["tench", "goldfish", "great white shark", "tiger shark"]
    np.testing.assert_array_equal(published.label_map(["Tiger_Shark", "tench"], weights), [3, 0])
    np.testing.assert_array_equal(published.label_map(["n01", "n02", "n03", "n04"], weights), [0, 1, 2, 3])
    with pytest.raises(ValueError, match=r"1 of the dataset's 2 classes are not classes of the weights \(e.g. 'cat'\)"):
        published.label_map(["cat", "tench"], weights)


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
    assert "weights='V7'" in capsys.readouterr().err
    cfg, rest = published.config_from_args(["--config.data.cache=false", "--config.data.name=folder:/x",
                                            "--config.seed", "3", "--pretrained", "m"])
    assert rest == ["--pretrained", "m"]
    assert (cfg.data.cache, cfg.data.name, cfg.seed, cfg.data.eval_split) == (False, "folder:/x", 3, "validation")


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
