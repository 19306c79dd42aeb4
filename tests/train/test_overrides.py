"""train.overrides: a config file and its ``--config.FIELD=VALUE`` overrides, parsed as the field's
type; an unknown field is one error naming it and the closest field names."""
import ml_collections
import pytest

from helpers import ROOT
from train import overrides

QUICKSTART = str(ROOT / "configs" / "lenet5_mnist5k.py")


def test_values_are_parsed_as_the_fields_types_and_the_config_is_locked():
    rest, fields = overrides.split(["--workdir", "w", "--config.optimizer.learning_rate=0.05", "--config.batch_size",
                                    "32", "--config.schedule.milestones=30,60", "--config.data.image_size=32",
                                    "--config.transfer.freeze=none", "--config.checkpoint.async_save=false",
                                    "--config.model_kwargs.small_input=true"])
    assert rest == ["--workdir", "w"]
    c = overrides.apply(overrides.load(QUICKSTART), fields)
    assert c.optimizer.learning_rate == 0.05 and c.batch_size == 32 and c.schedule.milestones == (30, 60)
    assert c.data.image_size == 32 and c.transfer.freeze == "none" and c.checkpoint.async_save is False
    assert c.model_kwargs.small_input is True
    with pytest.raises(AttributeError):
        c.new_field = 1


@pytest.mark.parametrize("argv", [["--config.batch_size"], ["--config.batch_size", "--workdir", "w"],
                                  ["--config.batch_size", "--config.seed=1"]])
def test_an_override_without_a_value_never_takes_the_next_option_as_its_value(argv):
    """Once ``--config.batch_size --workdir w`` set batch_size to '--workdir' and left 'w' unrecognised."""
    with pytest.raises(ValueError, match=r"^--config\.batch_size: no value given \(--config\.batch_size=VALUE\)$"):
        overrides.split(argv)
    assert overrides.split(["--config.optimizer.learning_rate", "-1", "--config.seed", "-3"]) == \
        ([], [("optimizer.learning_rate", "-1"), ("seed", "-3")])   # negative numbers are values


@pytest.mark.parametrize("workdir", ["", "  "])
def test_an_empty_workdir_is_refused(workdir):
    """``Path('')`` is the current directory: once a run trained into it."""
    with pytest.raises(ValueError, match=rf"^--workdir {workdir!r}: empty; name a folder \(e\.g\. runs/lenet5\)$"):
        overrides.check_workdir(workdir)
    overrides.check_workdir("runs/x")


@pytest.mark.parametrize("field, message", [
    ("foo=1", r"^unknown config field 'foo'; closest: .+ \(every field and its default: configs/default\.py\)$"),
    ("optimizer.learnin_rate=0.1", r"^unknown config field 'optimizer\.learnin_rate'; closest: optimizer\.learning_rate"),
    ("data.nme=x", r"^unknown config field 'data\.nme'; closest: data\.name"),
    ("optimizer=3", r"^config field 'optimizer' is a group: set its fields, optimizer\.\w+, "),
    ("batch_size=abc", r"^--config\.batch_size='abc': expected an integer$"),
    ("checkpoint.async_save=maybe", r"^--config\.checkpoint\.async_save='maybe': expected true or false$"),
    ("schedule.milestones=abc", r"^--config\.schedule\.milestones='abc': expected a comma-separated list of numbers"),
    ("schedule.milestones=30,6O", r"^--config\.schedule\.milestones='30,6O': expected a comma-separated list"),
])
def test_a_bad_override_is_one_line_naming_it(field, message):
    with pytest.raises(ValueError, match=message) as e:
        overrides.apply(overrides.load(QUICKSTART), [tuple(field.split("=", 1))])
    assert len(str(e.value).splitlines()) == 1


def test_a_missing_config_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="--config nope.py: no such file"):
        overrides.load("nope.py")
    (tmp_path / "c.py").write_text("x = 1\n")
    with pytest.raises(ValueError, match="defines no get_config"):
        overrides.load(str(tmp_path / "c.py"))
    (tmp_path / "syntax.py").write_text("def get_config(:\n")
    with pytest.raises(ValueError, match=r"^--config .*syntax\.py: SyntaxError: "):
        overrides.load(str(tmp_path / "syntax.py"))
    (tmp_path / "raises.py").write_text("def get_config():\n    return {}['model']\n")
    with pytest.raises(ValueError, match=r"^--config .*raises\.py: get_config\(\) raised KeyError: 'model'$"):
        overrides.load(str(tmp_path / "raises.py"))
    with pytest.raises(ValueError, match=r"^--config .*lenet5_mnist5k\.py:foo: the get_config\(\) of .* takes no argument"):
        overrides.load(QUICKSTART + ":foo")


def test_help_describes_fields_with_their_defaults_and_the_comments_of_default_py():
    from configs import default

    text = overrides.described(["batch_size", "optimizer.learning_rate"], default.get_config())
    assert "--config.batch_size=128" in text and "global batch, across all devices and processes" in text
    assert "--config.optimizer.learning_rate=0.1" in text and "peak learning rate" in text
    assert set(overrides.field_names(default.get_config())) >= {"data.empty_classes", "checkpoint.keep", "seed"}
    assert isinstance(default.get_config().model_kwargs, ml_collections.ConfigDict)


def test_none_unsets_an_optional_field_that_the_config_file_set():
    """``none`` once unset a field only while it was None: the fine-tune config's init_from became the
    string 'none', resnet20_fashion_mnist's image_size=28 refused it ("expected an integer")."""
    finetune = str(ROOT / "configs" / "resnet18_finetune_folder.py")
    c = overrides.apply(overrides.load(finetune), [("transfer.init_from", "none"), ("data.image_size", "None"),
                                                   ("data.manual_dir", "null")])
    assert c.transfer.init_from is None and c.data.image_size is None and c.data.manual_dir is None
    assert overrides.load(finetune).transfer.init_from == "pretrained:resnet18"   # the file did set it
    fashion = str(ROOT / "configs" / "resnet20_fashion_mnist.py")
    assert overrides.load(fashion).data.image_size == 28
    assert overrides.apply(overrides.load(fashion), [("data.image_size", "none")]).data.image_size is None
    assert overrides.optional_fields() == {"data.data_dir", "data.manual_dir", "data.image_size", "transfer.init_from"}
    with pytest.raises(ValueError, match=r"^--config\.batch_size='none': expected an integer$"):   # not optional
        overrides.apply(overrides.load(QUICKSTART), [("batch_size", "none")])
    assert overrides.apply(overrides.load(QUICKSTART), [("data.name", "none")]).data.name == "none"
