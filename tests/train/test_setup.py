"""train.setup, the one setup path: every config builds; the convolution implementation comes from
the devices and is never stored; freezing is resolved once for the optimizer and the BatchNorm
statistics; the checkpoint meta keeps the layout of checkpoints written before; a checkpoint's meta
rebuilds its evaluation run; the benchmarks harness builds through the setup."""
import importlib
import json
import logging
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import zoo
from helpers import FIXTURES, ROOT, inner_loop_sample, quick, snapshot
from train import data, optim, parallel, setup

CONFIGS = sorted(p.stem for p in (ROOT / "configs").glob("*.py") if p.stem not in ("__init__", "default"))
V0_META = json.loads((FIXTURES / "checkpoint_v0" / "checkpoints" / "3" / "meta" / "metadata").read_text())
SAVE_TIME_KEYS = {"epoch", "best_top1", "best_step", "step", "metrics", "versions"}  # added by fit / Checkpointer


@pytest.mark.parametrize("name", inner_loop_sample(CONFIGS, {"lenet5_mnist5k", "resnet20_cifar10", "mobilenet_v2_cifar10"}))
def test_every_config_builds_and_its_model_initialises(name):
    c = importlib.import_module(f"configs.{name}").get_config()
    assert c.model in zoo.list_models()
    shape = data.model_image_shape(c)
    kwargs = {**c.model_kwargs.to_dict(), "num_classes": 10}
    v = jax.eval_shape(lambda: zoo.create(c.model, **kwargs).init(jax.random.key(0), jnp.zeros((1, *shape))))
    assert v["params"]


@pytest.fixture(scope="module")
def lenet_run():
    return setup.build(quick(num_train_steps=10, **{"schedule.warmup_epochs": 0.0}))


def test_build_resolves_the_run_once(lenet_run):
    run = lenet_run
    assert run.plan.devices == tuple(jax.devices()) and run.model.axis_name == parallel.AXIS
    assert run.model.conv_impl == zoo.convs.conv_impl_for(jax.devices()[0].platform) == "cpu"
    assert run.model_kwargs == {"num_classes": 10} and "conv_impl" not in run.meta()["model_kwargs"]
    assert run.input_shape == (28, 28, 1) and run.steps_per_epoch == 4000 // 64 and run.total_steps == 10
    assert run.step_config.stats_trainable is None and run.info.name == "lenet5"
    assert run.train_pipe.batch_size == 64 and run.eval_pipe.num_examples == 1000


def test_meta_keeps_the_layout_of_checkpoints_written_before(lenet_run):
    """The same keys and values, plus the fields added since (preprocessing 'interpolation' and
    'train_resize', which a stored dict without them means bilinear and antialiased)."""
    meta = lenet_run.meta()
    assert list(meta) == [k for k in V0_META if k not in SAVE_TIME_KEYS]
    new = {"interpolation": "bilinear", "train_resize": "antialiased"}
    added = {"preprocessing": new, "train_preprocessing": new}
    assert {k: meta[k] for k in ("model", "model_kwargs", "num_classes", "class_names", "preprocessing",
                                 "train_preprocessing", "precision", "steps_per_epoch")} == \
           {k: {**V0_META[k], **added[k]} if k in added else V0_META[k]
            for k in ("model", "model_kwargs", "num_classes", "class_names", "preprocessing",
                      "train_preprocessing", "precision", "steps_per_epoch")}
    assert set(V0_META["config"]) <= set(meta["config"])


def test_model_kwargs_cannot_choose_what_the_setup_chooses():
    for field in setup.EXECUTION_ARGS:
        with pytest.raises(ValueError, match=rf"^model_kwargs\.{field}: chosen by the training setup"):
            setup.model_kwargs(quick(**{f"model_kwargs.{field}": "lax"}), 10)
    with pytest.raises(ValueError, match=r"model_kwargs.num_classes=3 but dataset 'mnist5k' has 10 classes"):
        setup.model_kwargs(quick(**{"model_kwargs.num_classes": 3}), 10)
    for wrong in ("abc", 10.0, True):  # once int()'s message, which named no field
        with pytest.raises(ValueError, match=rf"^model_kwargs.num_classes={wrong!r} but dataset 'mnist5k'"):
            setup.model_kwargs(quick(**{"model_kwargs.num_classes": wrong}), 10)
    assert setup.model_kwargs(quick(**{"model_kwargs.num_classes": 10}), 10)["num_classes"] == 10
    with pytest.raises(ValueError, match=r"precision='fp8': allowed values are \('float32', 'bfloat16', 'float16'\)"):
        setup.create_model("lenet5", {}, "fp8")


@pytest.mark.parametrize("overrides, message", [
    ({"num_epochs": 0.0}, r"^num_epochs=0\.0: must be > 0 and finite \(or set num_train_steps > 0\)$"),
    ({"num_epochs": -3.0}, r"^num_epochs=-3\.0: must be > 0"),
    ({"num_epochs": float("inf")}, r"^num_epochs=inf: must be > 0 and finite \(or set num_train_steps > 0\)$"),
    ({"num_epochs": float("nan")}, r"^num_epochs=nan: must be > 0 and finite"),
    ({"transfer.init_from": ""}, r"^transfer\.init_from='': empty; name a weight file, a workdir or pretrained:MODEL "
                                 r"\(none: train from scratch\)$"),
    ({"transfer.init_from": "  "}, r"^transfer\.init_from='  ': empty; "),
    ({"eval_batch_size": 0}, r"^eval_batch_size=0: must be a positive multiple of the device count 1$"),
    ({"batch_size": -8}, r"^batch_size=-8: must be a positive multiple of the device count 1$"),
])
def test_run_lengths_and_batch_sizes_are_checked_first_by_their_field_names(overrides, message, monkeypatch):
    """num_epochs=inf was an OverflowError once the steps were counted; a blank transfer.init_from (an unset
    shell variable) trained from scratch without a word."""
    from train import data

    monkeypatch.setattr(data, "from_config", lambda *a, **k: pytest.fail("a pipeline was opened"))
    with pytest.raises(ValueError, match=message):
        setup.build(quick(**overrides))


@pytest.mark.parametrize("overrides, message", [
    ({"checkpoint.every_steps": 0}, r"^checkpoint\.every_steps=0: must be an int >= 1 \(train steps\)$"),
    ({"checkpoint.every_steps": -1}, r"^checkpoint\.every_steps=-1: must be an int >= 1"),
    ({"log_every_steps": 0}, r"^log_every_steps=0: must be an int >= 1 \(train steps\)$"),
    ({"log_every_steps": -1}, r"^log_every_steps=-1: must be an int >= 1"),
    ({"eval_every_epochs": 0.0}, r"^eval_every_epochs=0\.0: must be > 0 \(epochs; 0\.5: twice an epoch\)$"),
    ({"eval_every_epochs": -1.0}, r"^eval_every_epochs=-1\.0: must be > 0"),
    ({"model": "lenet6"}, r"^model='lenet6': not a model of the zoo; closest: lenet5\b.*; python -m zoo lists them all$"),
    ({"model_kwargs.foo": 3}, r"^model_kwargs\.foo: not an option of lenet5; allowed: param_dtype, norm, bn_momentum, "
                              r"bn_epsilon, in_channels \(num_classes: set by the dataset\)$"),
    ({"model_kwargs.dtype": "float16"}, r"^model_kwargs\.dtype: chosen by the training setup"),
    # bfloat16 weights lost most small updates, float16's loss scaling failed to compile with them
    ({"model_kwargs.param_dtype": "bfloat16"}, r"^model_kwargs\.param_dtype='bfloat16': training keeps float32 "
                                               r"parameters, optimizer state and EMA"),
    ({"model_kwargs.param_dtype": "float16", "precision": "float16"}, r"^model_kwargs\.param_dtype='float16': "),
])
def test_intervals_and_the_model_are_checked_first_by_their_field_names(overrides, message, monkeypatch):
    """Once: every_steps / log_every_steps 0 a ZeroDivisionError after compiling, -1 and eval_every_epochs <= 0
    "every step"; model_kwargs.foo zoo.create's list, with options the next check refuses."""
    from train import data

    monkeypatch.setattr(data, "from_config", lambda *a, **k: pytest.fail("a pipeline was opened"))
    with pytest.raises(ValueError, match=message) as e:
        setup.build(quick(**overrides))
    assert len(str(e.value).splitlines()) == 1


def test_a_bad_interval_fails_before_anything_is_compiled_or_written(tmp_path, monkeypatch):
    import train
    from train import step

    monkeypatch.setattr(step, "create_state", lambda *a, **k: pytest.fail("a state was made"))
    with pytest.raises(ValueError, match=r"^checkpoint\.every_steps=0: must be an int >= 1"):
        train.fit(quick(num_train_steps=3, **{"checkpoint.every_steps": 0}), tmp_path / "w")
    assert not (tmp_path / "w").exists()


def _resnet20(**overrides):
    return quick(model="resnet20", num_train_steps=2, batch_size=8, eval_batch_size=8,
                 **{"data.name": "synthetic", "data.synthetic_num_examples": 16, "schedule.warmup_epochs": 0.0,
                    **overrides})


@pytest.mark.integration
def test_freezing_is_resolved_once_for_optimizer_and_batch_statistics():
    run = setup.build(_resnet20(**{"transfer.freeze": r"^layer1_"}))
    stats = run.step_config.stats_trainable
    flat = {optim._path(p): v for p, v in jax.tree_util.tree_flatten_with_path(stats)[0]}
    assert flat and {p for p, v in flat.items() if not v} == {p for p in flat if p.startswith("layer1_")}
    state = run.abstract_state()
    grads = jax.tree.map(lambda x: np.ones(x.shape, x.dtype), state.params)
    params = jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), state.params)
    updates, _ = run.tx.update(grads, run.tx.init(params), params)
    moved = {optim._path(p) for p, u in jax.tree_util.tree_flatten_with_path(updates)[0] if np.any(u != 0)}
    every = {optim._path(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]}
    assert moved == {p for p in every if not p.startswith("layer1_")}


def test_a_freeze_matching_nothing_fails_before_anything_is_written(tmp_path):
    import train
    with pytest.raises(ValueError, match=r"transfer\.freeze='\^nothing': the regex matches no parameter"):
        train.fit(_resnet20(**{"transfer.freeze": "^nothing"}), tmp_path / "w")
    assert not (tmp_path / "w").exists()


def test_for_checkpoint_rebuilds_the_evaluation_run():
    run = setup.for_checkpoint(V0_META, split="train")
    assert run.model.axis_name == parallel.AXIS and run.model.num_classes == 10 and run.tx is None
    assert run.model.conv_impl == zoo.convs.conv_impl_for(run.plan.devices[0].platform)
    assert run.step_config.loss == V0_META["config"]["loss"] == "cross_entropy"
    assert run.eval_pipe.split == "train" and run.eval_pipe.num_examples == 4000 and not run.eval_pipe.train
    # stored before 'interpolation' and 'train_resize' existed: read as it was (bilinear, antialiased)
    assert run.eval_pipe.preprocessing == {**V0_META["preprocessing"], "interpolation": "bilinear",
                                           "train_resize": "antialiased"}
    other = json.loads(json.dumps(V0_META))
    other["preprocessing"]["mean"] = [0.5]
    with pytest.raises(ValueError, match="preprocessing rebuilt from the checkpoint differs"):
        setup.for_checkpoint(other)


@pytest.mark.integration
def test_benchmark_harness_builds_through_the_setup(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    harness = importlib.import_module("harness")
    s = harness.setup("lenet5", batch=8, res=28, classes=10)
    c = harness.bench_config("lenet5", "float32", "shard_map")
    run = setup.make(c, plan=s.plan, model_kwargs=setup.model_kwargs(c, 10), input_shape=(28, 28, 1),
                     steps_per_epoch=100, total_steps=10_000)
    assert s.model == run.model and s.cfg == run.step_config and s.params == zoo.model_info("lenet5").params
    state, metrics = s.train_fn(s.state, s.batch)
    sums, _ = s.eval_fn(s.variables(state), s.batch)
    assert np.isfinite(float(metrics["loss"])) and float(parallel.unreplicate(sums, s.plan)["count"]) == 8
    sys.modules.pop("harness", None)


@pytest.mark.parametrize("freeze, mult, said", [("none", 0.0, "stops the backbone's weights but not its BatchNorm"),
                                                 ("backbone", 0.1, "has nothing to act on with transfer.freeze='backbone'"),
                                                 ("none", 0.1, None)])
def test_a_backbone_lr_mult_that_does_less_than_it_seems_is_a_warning(freeze, mult, said, caplog):
    c = quick(compile_cache="off", **{"transfer.freeze": freeze, "transfer.backbone_lr_mult": mult})
    plan = parallel.make_plan(c.parallelism, c.num_devices)
    with caplog.at_level(logging.WARNING, logger="train"):
        setup.make(c, plan=plan, model_kwargs=setup.model_kwargs(c, 10), input_shape=(28, 28, 1),
                   steps_per_epoch=100, total_steps=10_000)
    warned = [r.getMessage() for r in caplog.records if "backbone_lr_mult" in r.getMessage()]
    assert len(warned) == (1 if said else 0) and all(m.startswith(f"transfer.backbone_lr_mult={mult!r}") and said in m
                                                     for m in warned)


def test_every_run_sets_the_compilation_cache_of_its_config(tmp_path):
    c = quick(compile_cache=str(tmp_path / "jax"))
    plan = parallel.make_plan(c.parallelism, c.num_devices)
    try:
        setup.make(c, plan=plan, model_kwargs=setup.model_kwargs(c, 10), input_shape=(28, 28, 1),
                   steps_per_epoch=100, total_steps=10_000)
        assert jax.config.jax_compilation_cache_dir == str(tmp_path / "jax")
        meta = json.loads(json.dumps(V0_META))
        meta["config"]["compile_cache"] = "off"
        setup.for_checkpoint(meta, split="test")
        assert jax.config.jax_compilation_cache_dir is None
    finally:
        zoo.compiling.use_compile_cache("off")


@pytest.mark.integration
def test_a_second_process_reads_the_compiled_train_step_from_the_cache(tmp_path):
    """Two fresh processes compile the same step: the first writes it, the second reads it back
    (JAX's cache-hit events) and writes nothing; the cache off: neither."""
    from helpers import run_worker

    cache = tmp_path / "cache"
    first = run_worker("compile_cache", cache)
    files = sorted(p.name for p in cache.iterdir())
    assert first["cache_dir"] == str(cache) and first["misses"] >= 1 and first["hits"] == 0
    assert any(name.startswith("jit_") and name.endswith("-cache") for name in files)
    second = run_worker("compile_cache", cache)
    assert second["hits"] >= 1 and second["misses"] == 0
    assert sorted(p.name for p in cache.iterdir()) == files
    assert second["loss"] == first["loss"]
    off = run_worker("compile_cache", "off")
    assert off["cache_dir"] is None and off["hits"] == off["misses"] == 0


def test_a_dataset_whose_classes_changed_since_training_is_refused(tmp_path):
    """train.evaluate once scored a folder run after a class folder was added (4 labels, 3 outputs) or
    renamed (labels in another order), without a word: per-class scores of the wrong classes."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in ["daisy", "rose", "tulip"]:
        (tmp_path / name).mkdir()
        for i in range(4):
            Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(tmp_path / name / f"{i}.png")
    cfg = {"name": f"folder:{tmp_path}", "holdout_fraction": 0.25, "eval_split": "test", "train_split": "train"}
    pipe = data.load(cfg, split="test", train=False, batch_size=2, image_shape=(16, 16, 3))
    meta = {"class_names": ["daisy", "rose", "tulip"], "num_classes": 3, "model_kwargs": {"num_classes": 3},
            "config": {"data": cfg}}
    setup.check_classes(meta, pipe)   # unchanged: fine
    (tmp_path / "tulip").rename(tmp_path / "aster")
    renamed = data.load(cfg, split="test", train=False, batch_size=2, image_shape=(16, 16, 3))
    with pytest.raises(ValueError, match=r"^data\.name='folder:.*' now has classes \['aster', 'daisy', 'rose'\] \(3\); "
                                         r"the checkpoint was trained on \['daisy', 'rose', 'tulip'\] \(not there now: "
                                         r"\['tulip'\]; new: \['aster'\]\); its scores would be of the wrong classes$"):
        setup.check_classes(meta, renamed)
    (tmp_path / "aster").rename(tmp_path / "tulip")
    (tmp_path / "zinnia").mkdir()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "zinnia" / "0.png")
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "zinnia" / "1.png")
    added = data.load(cfg, split="test", train=False, batch_size=2, image_shape=(16, 16, 3))
    with pytest.raises(ValueError, match=r"\(4\); the checkpoint was trained on .* \(new: \['zinnia'\]\)"):
        setup.check_classes(meta, added)


def test_resuming_after_a_class_folder_was_renamed_is_refused(tmp_path):
    """Training once resumed with every label shifted by one (classes cat, dog, fox -> dog, fox, zebra):
    only the model and the class count were compared."""
    from PIL import Image

    import train
    from train import checkpoint

    rng, root = np.random.default_rng(0), tmp_path / "images"
    for name in ["cat", "dog", "fox"]:
        (root / name).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(root / name / f"{i}.png")
    config = quick(**{"data.name": f"folder:{root}", "data.holdout_fraction": 0.34, "batch_size": 4,
                      "eval_batch_size": 2, "num_train_steps": 2, "schedule.warmup_epochs": 0.0})
    train.fit(config, tmp_path / "w")
    (root / "cat").rename(root / "zebra")
    files = snapshot(tmp_path / "w")
    config.num_train_steps = 4
    with pytest.raises(checkpoint.WorkdirMismatchError, match=r"now has classes \['dog', 'fox', 'zebra'\] \(3\); the "
                       r"checkpoint was trained on \['cat', 'dog', 'fox'\] .*; resuming would train its outputs on "
                       r"other classes; nothing was changed"):
        train.fit(config, tmp_path / "w")
    assert {k: v for k, v in snapshot(tmp_path / "w").items() if k != "train.log"} == \
        {k: v for k, v in files.items() if k != "train.log"}
