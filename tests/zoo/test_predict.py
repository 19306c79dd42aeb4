"""python -m zoo.predict (zoo/predict.py, zoo/bundle.py): top classes of generated images with published
weights (ImageNet names, the entry's preprocessing) and with a training run (its own class names), text
and JSON output, and one clear error line for bad input."""
import hashlib
import json
import re

import jax
import numpy as np
import pytest
from PIL import Image

import train
import zoo
from fixtures.parity.recipe import recipe_state_dict
from helpers import write_pth
from train.data import transforms
from zoo import bundle, convert
from zoo.predict import main
from zoo.weights import catalogue

SMALL = "shufflenet_v2_x0_5"
LINE = re.compile(r"^  +(\d+\.\d\d)%  (.+) \((\d+)\)$")


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """SMALL's parity-recipe weights as a registered entry (tag TEST, bicubic resize 80, crop 64: small
    inputs compile fast), a generated image file, and the cache folder."""
    root = tmp_path_factory.mktemp("predict")
    path = write_pth(root / "small.pth", recipe_state_dict(convert.state_dict_shapes(SMALL)))
    zoo.register_weights(SMALL, "TEST", url=path.as_uri(), sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
                         resize_size=80, crop_size=64, interpolation="bicubic")
    rng = np.random.default_rng(0)
    image = (rng.random((180, 260, 3)) * 255).astype(np.uint8)
    Image.fromarray(image).save(root / "photo.png")
    yield root, image
    catalogue.unregister(SMALL, "TEST")


@pytest.mark.integration
def test_predict_prints_five_imagenet_names_with_their_probabilities(published, capsys):
    root, image = published
    assert main(["--model", SMALL, "--weights", "TEST", "--cache_dir", str(root / "cache"),
                 str(root / "photo.png")]) == 0
    header, *lines = capsys.readouterr().out.strip().splitlines()
    assert header == f"photo.png ({SMALL} TEST)" and len(lines) == 5
    parsed = [LINE.match(line).groups() for line in lines]
    names = catalogue.imagenet_classes()
    assert all(names[int(i)] == name for _, name, i in parsed)
    probs = [float(p) for p, _, _ in parsed]
    assert probs == sorted(probs, reverse=True) and sum(probs) <= 100.01
    # the same five classes as the model on the entry's preprocessing (bicubic resize, 64 crop)
    model, variables = zoo.load_pretrained(SMALL, "TEST", cache_dir=root / "cache")
    pp = transforms.for_weights(catalogue.entry(SMALL, "TEST"))
    assert (pp["image_size"], pp["interpolation"], pp["crop_fraction"]) == ([64, 64], "bicubic", 64 / 80)
    logits = np.asarray(jax.jit(lambda v, x: model.apply(v, x, train=False))(variables,
                                                                           transforms.preprocess_eval(image, pp)))
    assert [int(i) for _, _, i in parsed] == list(np.argsort(-logits[0], kind="stable")[:5])


@pytest.mark.integration
def test_json_output_and_topk(published, capsys):
    root, _ = published
    photo = str(root / "photo.png")
    assert main(["--model", SMALL, "--weights", "TEST", "--cache_dir", str(root / "cache"), "--topk", "3", "--json",
                 photo, photo]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model"] == f"{SMALL} TEST" and [p["image"] for p in out["predictions"]] == [photo, photo]
    top = out["predictions"][0]["top"]
    assert len(top) == 3 and set(top[0]) == {"class", "index", "probability"} and out["predictions"][1]["top"] == top


def test_a_training_run_names_its_own_classes(trained_lenet5, tmp_path, capsys):
    raw, labels = trained_lenet5["raw"][:6], trained_lenet5["labels"][:6]
    paths = []
    for i, digit in enumerate(raw):
        Image.fromarray(digit[..., 0]).save(tmp_path / f"{i}.png")
        paths.append(str(tmp_path / f"{i}.png"))
    assert main(["--workdir", str(trained_lenet5["workdir"]), "--json", *paths]) == 0
    preds = json.loads(capsys.readouterr().out)["predictions"]
    assert all(len(p["top"]) == 5 and all(c["class"] == str(c["index"]) for c in p["top"]) for p in preds)
    top1 = [int(p["top"][0]["class"]) for p in preds]
    assert sum(t == int(y) for t, y in zip(top1, labels)) >= 5  # a trained LeNet-5 reads the digits
    b = bundle.load(workdir=trained_lenet5["workdir"])
    assert b.class_names == tuple(train.load(trained_lenet5["workdir"]).meta["class_names"])
    ema = (train.load(trained_lenet5["workdir"]).meta["config"]["optimizer"]["ema_decay"] or 0) > 0
    assert b.description.endswith(", parameter EMA)") == ema   # the weights used are named
    assert main(["--workdir", str(trained_lenet5["workdir"]), "--topk", "12", paths[0]]) == 0
    assert capsys.readouterr().err == "note: --topk 12: the model has 10 classes; all are shown\n"
    with pytest.raises(ValueError, match="model='resnet18' but .* holds a lenet5"):
        bundle.load("resnet18", workdir=trained_lenet5["workdir"])


def test_a_weight_file_takes_its_catalogue_entrys_preprocessing_else_the_defaults(published, tmp_path):
    """A file that is an entry's (by its sha256) is evaluated with that entry's resize / crop; another
    file with the model's DEFAULT entry's; the description says which (once, every file got DEFAULT's
    without a word: torchvision's resnet50 V1 file was cropped as V2)."""
    root, _ = published
    b = bundle.load(SMALL, file=root / "small.pth")
    assert b.preprocessing == transforms.for_weights(catalogue.entry(SMALL, "TEST"))
    assert "the TEST weights' file: their preprocessing" in b.description
    other = convert.save_torchvision(SMALL, bundle.load(SMALL, file=root / "small.pth").variables, tmp_path / "o.safetensors")
    assert other
    b = bundle.load(SMALL, file=tmp_path / "o.safetensors")
    default = next(e for e in catalogue.entries(SMALL) if e.default)
    assert b.preprocessing == transforms.for_weights(default)
    assert f"preprocessing of {default.tag}" in b.description


def test_googlenet_files_take_transform_input_from_the_catalogue_or_the_option(tmp_path, monkeypatch, capsys):
    """torchvision's published GoogLeNet file expects transform_input=True: recognised by its hash (here a
    stand-in file registered under the published entry's settings); any other file takes the option,
    default False, and the description names the setting (the predict CLI once ran such files with
    False and printed nothing)."""
    import dataclasses

    path = write_pth(tmp_path / "g.pth", recipe_state_dict(convert.state_dict_shapes("googlenet")))
    b = bundle.load("googlenet", file=path)
    assert b.model.transform_input is False and "transform_input=False" in b.description
    assert bundle.load("googlenet", file=path, transform_input=True).model.transform_input is True
    stand_in = dataclasses.replace(catalogue.entry("googlenet", "IMAGENET1K_V1"),
                                   sha256=hashlib.sha256(path.read_bytes()).hexdigest())
    monkeypatch.setattr(catalogue, "entries", lambda name: (stand_in,) if name == "googlenet" else ())
    b = bundle.load("googlenet", file=path)
    assert b.model.transform_input is True and "IMAGENET1K_V1 weights' file" in b.description
    with pytest.raises(ValueError, match=r"^transform_input=True: only with a weight file \(file=\) of googlenet"):
        bundle.load("resnet18", file=path, transform_input=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "x.png")
    assert main(["--model", "googlenet", "--weights", "IMAGENET1K_V1", "--transform_input", str(tmp_path / "x.png")]) == 2
    assert capsys.readouterr().err.startswith("error: transform_input=True: only with a weight file")


def test_bad_input_gets_one_clear_line(published, tmp_path, capsys):
    root, _ = published
    (tmp_path / "notes.txt").write_text("not an image")
    assert main(["--model", SMALL, "--weights", "TEST", str(tmp_path / "notes.txt")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {tmp_path / 'notes.txt'}: not a readable image") and "\n" not in err
    assert main(["--model", "resnet19", str(root / "photo.png")]) == 2
    assert "unknown model name 'resnet19'; closest: resnet18" in capsys.readouterr().err
    assert main(["--model", SMALL, "--weights", "TEST", "--topk", "0", str(root / "photo.png")]) == 2
    assert "topk=0: a positive number" in capsys.readouterr().err
    assert main(["--model", SMALL, "--weights", "TEST", "--checkpoint", "latest", str(root / "photo.png")]) == 2
    assert capsys.readouterr().err == "error: --checkpoint=latest: only a --workdir has checkpoints\n"
    with pytest.raises(SystemExit):  # argparse: --weights and --file exclude each other
        main(["--model", SMALL, "--weights", "TEST", "--file", "x.pth", str(root / "photo.png")])


def test_images_are_read_as_the_training_loader_reads_them(tmp_path):
    """zoo.predict once read a 16-bit grey PNG all white (PIL's convert('RGB')) and a float TIFF all
    black, where training and evaluation scale the first and refuse the second; and a FIFO named as an
    image blocked for ever. train.inspect's --image reader the same."""
    import os

    from train.data import decode
    from train.inspect import load_image
    from zoo.predict import read_image

    levels = np.arange(0, 65536, 257, dtype=np.uint16)[:256].reshape(16, 16)
    Image.fromarray(levels).save(tmp_path / "g16.png")
    for read in (read_image, load_image):
        np.testing.assert_array_equal(read(tmp_path / "g16.png"), np.arange(256, dtype=np.uint8).reshape(16, 16))
    np.testing.assert_array_equal(read_image(tmp_path / "g16.png")[..., None].repeat(3, -1),
                                  decode.read_rgb(tmp_path / "g16.png")[0])
    Image.fromarray(levels.astype(np.float32)).save(tmp_path / "f.tif")
    os.mkfifo(tmp_path / "fifo.png")
    for name, said in [("f.tif", r"float pixels \(PIL mode F\) state no 8-bit scale"), ("fifo.png", "not a regular file")]:
        with pytest.raises(ValueError, match=rf"^{tmp_path / name}: .*{said}"):
            read_image(tmp_path / name)
        with pytest.raises(ValueError, match=rf"^--image {tmp_path / name}: .*{said}"):
            load_image(tmp_path / name)
    from train.data import folders
    assert folders.check_image(str(tmp_path / "fifo.png")) == "not a regular file"


def test_a_run_that_kept_a_parameter_ema_is_described_as_such(monkeypatch):
    """predict and export use the EMA, as evaluate does; their description (and the export's .json) says so."""
    from train import evaluation

    model = zoo.create("lenet5")
    meta = {"model": "lenet5", "preprocessing": {}, "class_names": [str(i) for i in range(10)],
            "config": {"optimizer": {"ema_decay": 0.999}}}
    monkeypatch.setattr(evaluation, "load", lambda workdir, checkpoint: evaluation.Loaded(model, {}, meta, 40))
    assert bundle.load(workdir="runs/x").description == "runs/x (lenet5, step 40, parameter EMA)"
    meta["config"]["optimizer"]["ema_decay"] = 0.0
    assert bundle.load(workdir="runs/x").description == "runs/x (lenet5, step 40)"
