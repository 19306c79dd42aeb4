"""The command ``python -m train.inspect`` (run in-process through its ``main``) on a LeNet-5 trained
briefly on mnist5k (the shared ``trained_lenet5`` fixture): every picture is a readable PNG."""
import matplotlib.image
import pytest
from PIL import Image

from train import inspect as command


def test_an_empty_workdir_is_refused(tmp_path, capsys, monkeypatch):
    """``Path('')`` would be the current directory: its checkpoints read, an ``inspect/`` folder written there."""
    monkeypatch.chdir(tmp_path)
    assert command.main(["--workdir", "", "--index", "0"]) == 2
    assert capsys.readouterr().err == "error: --workdir '': empty; name a folder (e.g. runs/lenet5)\n"
    assert list(tmp_path.iterdir()) == []


def test_an_out_that_is_a_file_is_refused_first(tmp_path, capsys, monkeypatch):
    from train import evaluation

    monkeypatch.setattr(evaluation, "load", lambda *a, **k: pytest.fail("the checkpoint was read before the check"))
    (tmp_path / "afile").write_text("mine")
    assert command.main(["--workdir", str(tmp_path), "--index", "0", "--out", str(tmp_path / "afile")]) == 2
    assert capsys.readouterr().err == f"error: --out={str(tmp_path / 'afile')!r}: {tmp_path / 'afile'} is a file, not a folder\n"
    assert (tmp_path / "afile").read_text() == "mine"


def test_a_default_out_that_cannot_be_written_is_refused_first(tmp_path, capsys, monkeypatch):
    """Only --out was checked: a read-only workdir ended in '[Errno 30] ...: .../inspect' after the work."""
    from train import evaluation
    from zoo import files

    monkeypatch.setattr(files, "cannot_write_in", lambda folder: OSError(30, "Read-only file system"))
    monkeypatch.setattr(evaluation, "load", lambda *a, **k: pytest.fail("the checkpoint was read before the check"))
    assert command.main(["--workdir", str(tmp_path), "--index", "0"]) == 2
    assert capsys.readouterr().err == (f"error: WORKDIR/inspect={str(tmp_path / 'inspect')!r}: {tmp_path} cannot be "
                                       f"written (Read-only file system); write elsewhere with --out DIR\n")
    assert list(tmp_path.iterdir()) == []


def test_the_image_is_never_written_over(trained_lenet5, tmp_path, capsys):
    """``--image photos/filters.png --out photos`` once replaced the user's image by the filters figure."""
    image = tmp_path / "filters.png"
    Image.fromarray(trained_lenet5["raw"][3, ..., 0]).save(image)
    mine = image.read_bytes()
    assert command.main(["--workdir", str(trained_lenet5["workdir"]), "--image", str(image), "--out", str(tmp_path),
                         "--what", "saliency,filters"]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: --out {tmp_path}: filters.png would be written over the --image file {image}; "
                   f"choose another --out\n")
    assert image.read_bytes() == mine


def test_a_layer_no_analysis_asked_for_takes_is_refused(tmp_path, capsys, monkeypatch):
    """--layer was ignored without a word by saliency, rf, occlusion, ..."""
    from train import evaluation

    monkeypatch.setattr(evaluation, "load", lambda *a, **k: pytest.fail("the checkpoint was read before the check"))
    assert command.main(["--workdir", str(tmp_path), "--index", "0", "--what", "saliency,rf", "--layer", "c1"]) == 2
    assert capsys.readouterr().err == ("error: --layer c1: only features and gradcam take layers, and --what asks for "
                                       "saliency,rf\n")


def test_an_empty_what_is_refused(tmp_path, capsys, monkeypatch):
    """``--what ,`` (nothing left after splitting) once ran all ten analyses."""
    from train import evaluation

    monkeypatch.setattr(evaluation, "load", lambda *a, **k: pytest.fail("the checkpoint was read before the check"))
    assert command.main(["--workdir", str(tmp_path), "--index", "0", "--what", ","]) == 2
    assert capsys.readouterr().err == ("error: --what: no analysis named; name one or more of filters, features, "
                                       "saliency, gradcam, occlusion, classmodel, neighbours, rf, fixed "
                                       "(default: all)\n")


@pytest.mark.parametrize("option, value, takes", [("--patch", "9", "occlusion"), ("--stride", "100", "occlusion"),
                                                  ("--steps", "-4", "classmodel"), ("--k", "3", "neighbours"),
                                                  ("--neighbours_max", "50", "neighbours")])
def test_an_option_no_analysis_asked_for_takes_is_refused(tmp_path, capsys, monkeypatch, option, value, takes):
    """They were ignored without a word (``--patch 9 --stride 100 --steps -4 --what saliency``: rc 0),
    where --layer in the same case is refused."""
    from train import evaluation

    monkeypatch.setattr(evaluation, "load", lambda *a, **k: pytest.fail("the checkpoint was read before the check"))
    assert command.main(["--workdir", str(tmp_path), "--index", "0", "--what", "saliency,rf", option, value]) == 2
    assert capsys.readouterr().err == (f"error: {option} {value}: only {takes} takes it, and --what asks for "
                                       "saliency,rf\n")


@pytest.mark.parametrize("option, value, least", [("--patch", "0", 1), ("--stride", "0", 1), ("--steps", "-1", 0),
                                                  ("--k", "0", 1), ("--neighbours_max", "0", 1),
                                                  ("--neighbours_max", "-5", 1)])
def test_option_values_are_checked_before_anything_is_read_or_written(tmp_path, capsys, monkeypatch, option, value,
                                                                       least):
    """Each once failed only when its analysis ran, after the earlier pictures were written
    (``--what saliency,occlusion --patch 0`` left a saliency picture), and named the Python keyword
    (``patch=0``); ``--neighbours_max -5`` searched the images loaded for ``--index``."""
    from train import evaluation

    monkeypatch.setattr(evaluation, "load", lambda *a, **k: pytest.fail("the checkpoint was read before the check"))
    out = tmp_path / "pictures"
    assert command.main(["--workdir", str(tmp_path), "--index", "1", "--what",
                         "saliency,occlusion,classmodel,neighbours", option, value, "--out", str(out)]) == 2
    assert capsys.readouterr().err == f"error: {option}={value}: must be an integer >= {least}\n"
    assert not out.exists()


@pytest.mark.integration
def test_a_patch_larger_than_the_image_is_refused_before_any_picture(trained_lenet5, tmp_path, capsys):
    out = tmp_path / "pictures"
    assert command.main(["--workdir", str(trained_lenet5["workdir"]), "--index", "1", "--what", "saliency,occlusion",
                         "--patch", "29", "--out", str(out)]) == 2
    assert capsys.readouterr().err == "error: --patch=29: must be between 1 and the image side 28\n"
    assert not out.exists()


@pytest.mark.integration
def test_the_neighbours_title_states_the_neighbours_shown(trained_lenet5, tmp_path, monkeypatch):
    """``--k 5000 --neighbours_max 20`` was titled "5000 nearest of 20 eval images"; --k defaults to 8."""
    from zoo.inspect import plots

    titles = []
    original = plots.plot_neighbours
    monkeypatch.setattr(plots, "plot_neighbours", lambda *a, **kw: titles.append(kw["title"]) or original(*a, **kw))
    workdir = str(trained_lenet5["workdir"])
    for more in (["--k", "50", "--neighbours_max", "5"], ["--neighbours_max", "12"], ["--k", "3"]):
        assert command.main(["--workdir", workdir, "--index", "2", "--what", "neighbours", "--out", str(tmp_path),
                             *more]) == 0
    # defaults: --k 8, --neighbours_max 1000 (the whole mnist5k test split here)
    assert [t.split(":")[0] for t in titles] == ["5 nearest of 5 eval images", "8 nearest of 12 eval images",
                                                 "3 nearest of 1000 eval images"]


@pytest.mark.integration
def test_the_command_writes_readable_pngs(trained_lenet5, tmp_path, capsys):
    digit = tmp_path / "digit.png"
    Image.fromarray(trained_lenet5["raw"][3, ..., 0]).save(digit)
    out = tmp_path / "pictures"
    assert command.main(["--workdir", str(trained_lenet5["workdir"]), "--image", str(digit), "--out", str(out),
                         "--steps", "20", "--neighbours_max", "200", "--k", "4", "--patch", "6", "--stride", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    written = dict(line.split(": ", 1) for line in lines if line.split(": ", 1)[0] in command.WHAT)
    assert sorted(written) == sorted(command.WHAT)
    assert "predicted" in lines[0]
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) == 9 and (out / "digit_gradcam_s4_0.png").exists() and (out / "filters.png").exists()
    for p in pngs:
        img = matplotlib.image.imread(p)
        assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    assert "s4" in (out / "receptive_fields.txt").read_text()
    # the default output folder is next to the checkpoint; classes by name; layers by tap name
    assert command.main(["--workdir", str(trained_lenet5["workdir"]), "--index", "0", "--what", "gradcam,features",
                         "--layer", "c3", "--class", "3"]) == 0
    assert sorted(p.name for p in (trained_lenet5["workdir"] / "inspect").glob("*.png")) == \
        ["test0_features_c3.png", "test0_gradcam_c3_3.png"]
    assert command.main(["--workdir", str(trained_lenet5["workdir"]), "--image", str(digit), "--what", "bogus"]) == 2
    assert "bogus" in capsys.readouterr().err


@pytest.mark.integration
def test_attribution_titles_state_the_prediction_and_the_explained_class(trained_lenet5, tmp_path, monkeypatch):
    from zoo import inspect as zi
    from zoo.inspect import plots

    titles = {}
    original = plots.plot_attribution
    monkeypatch.setattr(plots, "plot_attribution",
                        lambda image, heatmap, path, **kw: titles.setdefault(kw["title"].split()[0], kw["title"])
                        and original(image, heatmap, path, **kw))
    x = trained_lenet5["x"][3:4]
    pred, probs = zi.predict(trained_lenet5["model"], trained_lenet5["variables"], x)
    p, c = int(pred[0]), (int(pred[0]) + 1) % 10
    command.run(trained_lenet5["workdir"], index=3, what=["saliency", "gradcam", "occlusion"], class_arg=str(c),
                out=tmp_path, patch=7, stride=7, print_fn=lambda *a: None)
    assert sorted(titles) == ["Grad-CAM", "occlusion:", "saliency"]
    # the patch is 0 after normalisation, the dataset's mean colour (not grey), and the map averages patches
    assert titles["occlusion:"].startswith(f"occlusion: mean drop of p({c}) under the 7x7 patches of the mean colour "
                                           f"covering each pixel; ")
    for title in titles.values():
        assert f"class {c} (p={probs[0, c]:.3f})" in title and f"predicted {p} (p={probs[0, p]:.3f})" in title


@pytest.mark.integration
def test_layer_names_are_checked_and_gradcam_says_what_it_leaves_out(trained_lenet5, tmp_path, capsys):
    """A typo in ``--layer``, or an ``--image`` that cannot be read, is one error line naming the option,
    before any folder or picture is written (a typo once failed after the other pictures, for features,
    or fell back silently, for Grad-CAM); a module path or a non-spatial tap serves features, and
    Grad-CAM names it as left out, where it once dropped it silently."""
    workdir, out = str(trained_lenet5["workdir"]), tmp_path / "pictures"
    assert command.main(["--workdir", workdir, "--index", "0", "--what", "saliency,features,gradcam", "--layer",
                         "c3,s44", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --layer: 's44' is neither a feature tap (c1, s2, c3, s4, c5, "
                                               "f6, pre_logits) nor a module path of LeNet5")
    assert not out.exists()
    for image, said in [(tmp_path / "nope.png", "No such file or directory"), (tmp_path, "Is a directory")]:
        assert command.main(["--workdir", workdir, "--image", str(image), "--out", str(out)]) == 2
        assert capsys.readouterr().err == f"error: --image {image}: not a readable image ({said})\n"
    assert command.main(["--workdir", workdir, "--index", "0", "--what", "gradcam,features", "--layer", "c5",
                         "--out", str(out)]) == 2
    assert capsys.readouterr().err == ("error: --layer: 'c5' is not a spatial feature map (its output has shape "
                                       "(1, 120)), which features draws\n")
    assert not out.exists()
    assert command.main(["--workdir", workdir, "--index", "0", "--what", "features,gradcam", "--layer",
                         "c3,conv2", "--out", str(out)]) == 0
    assert "gradcam: --layer conv2: not a spatial feature tap (taps: c1, s2, c3, s4); skipped" in \
        capsys.readouterr().out
    names = sorted(p.name for p in out.glob("*.png"))  # the class in Grad-CAM's name is the predicted one
    assert names[:2] == ["test0_features_c3.png", "test0_features_conv2.png"] and len(names) == 3
    assert names[2].startswith("test0_gradcam_c3_")
    assert command.main(["--workdir", workdir, "--index", "0", "--what", "gradcam", "--layer", "c5,f6",
                         "--out", str(tmp_path / "default")]) == 0
    assert "gradcam: --layer c5,f6: not a spatial feature tap (taps: c1, s2, c3, s4); using s4" in \
        capsys.readouterr().out
    assert [p.name.startswith("test0_gradcam_s4_") for p in (tmp_path / "default").glob("*.png")] == [True]
