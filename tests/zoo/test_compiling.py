"""The persistent compilation cache switch (zoo.compiling): on by default in a user cache directory,
moved or turned off by the config field or the environment variable."""
import logging
from pathlib import Path

import jax
import pytest

from zoo import compiling


@pytest.fixture
def restore_cache():
    """Leave the process's cache setting as the test found it."""
    before = jax.config.jax_compilation_cache_dir
    yield
    compiling.use_compile_cache(before or "off")


def test_default_is_the_projects_user_cache_directory(monkeypatch, tmp_path):
    monkeypatch.delenv(compiling.CACHE_ENV, raising=False)
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path))   # where the weights are cached too
    assert compiling.cache_dir_for("auto") == tmp_path / "jax"
    assert compiling.cache_dir_for(None) == tmp_path / "jax"
    monkeypatch.delenv("ZOO_CACHE")
    assert compiling.cache_dir_for("auto") == Path.home() / ".cache" / "cnn-zoo" / "jax"


@pytest.mark.parametrize("value", ["off", "OFF", "0", "false", "none"])
def test_the_environment_variable_turns_it_off(monkeypatch, value):
    monkeypatch.setenv(compiling.CACHE_ENV, value)
    assert compiling.cache_dir_for("auto") is None


def test_the_environment_variable_moves_it_and_the_config_field_wins(monkeypatch, tmp_path):
    monkeypatch.setenv(compiling.CACHE_ENV, str(tmp_path / "moved"))
    assert compiling.cache_dir_for("auto") == tmp_path / "moved"
    assert compiling.cache_dir_for(str(tmp_path / "mine")) == tmp_path / "mine"
    assert compiling.cache_dir_for("off") is None
    assert compiling.cache_dir_for("~/x") == Path.home() / "x"


def test_use_sets_jax_once_and_can_turn_it_off(tmp_path, restore_cache):
    assert compiling.use_compile_cache(str(tmp_path / "c")) == tmp_path / "c"
    assert (tmp_path / "c").is_dir() and jax.config.jax_compilation_cache_dir == str(tmp_path / "c")
    assert jax.config.jax_persistent_cache_min_compile_time_secs == compiling.CACHE_MIN_COMPILE_SECS
    assert compiling.use_compile_cache(str(tmp_path / "c")) == tmp_path / "c"   # again: nothing changes
    assert compiling.use_compile_cache("off") is None
    assert jax.config.jax_compilation_cache_dir is None


def test_a_directory_that_cannot_be_made_leaves_the_cache_off(tmp_path, caplog, restore_cache):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with caplog.at_level(logging.WARNING, logger="zoo"):
        assert compiling.use_compile_cache(str(blocker / "jax")) is None
    assert jax.config.jax_compilation_cache_dir is None
    assert [r.getMessage() for r in caplog.records if "compilation cache off" in r.getMessage()]
