"""ONE setup path: the parts of a run (model, plan, pipelines, optimizer, step config), built once.

    run = setup.build(config, workdir=workdir)   # fit: plan, pipelines, model, optimizer, step config
    state = run.fresh_state()                     # or ckpt.restore(run.abstract_state()) to resume
    train_step = run.compile_train()              # the compiled per-device step of train/step.py

    run = setup.for_checkpoint(meta)              # evaluate a checkpoint: its stored config, eval pipeline
    model = setup.create_model(name, model_kwargs, precision)   # restore: a model for research code

``fit`` (``train/loop.py``), ``train.evaluate`` / ``train.restore`` (``train/evaluation.py``, which
transfer learning reads workdirs with) and ``benchmarks/harness.py`` build through here; nothing
else creates models or optimizers for a run. Resolved once, here:

* the convolution implementation, from the devices that run the model
  (``zoo.convs.conv_impl_for(platform)``): an execution choice, never stored in a checkpoint's
  ``model_kwargs``;
* ``transfer.freeze`` / ``transfer.backbone_lr_mult`` with the model's head
  (:class:`train.optim.Freezing`): the optimizer's labels and the step's BatchNorm-statistics mask
  both come from it;
* the checkpoint's self-description (:meth:`Run.meta`), which :func:`for_checkpoint` reads back.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
from pathlib import Path

import flax.linen as nn
import jax
import ml_collections
import numpy as np
import optax

import zoo
from configs import default
from train import checkpoint, data, optim, parallel, step
from train.schedules import check
from zoo.checks import is_finite_number

log = logging.getLogger("train")

# configs/default.py: fields a config stored by an older checkpoint may lack take their default there
_DEFAULTS = default.get_config()

# zoo.create arguments chosen here for the devices, never by model_kwargs (they are not stored)
EXECUTION_ARGS = ("axis_name", "dtype", "conv_impl")


@dataclasses.dataclass(frozen=True)
class Run:
    """The parts of one run, built once. ``tx`` is None for a run built to evaluate a checkpoint."""

    config: ml_collections.ConfigDict   # the run's config (for a checkpoint: the one stored with it)
    info: zoo.registry.ModelInfo
    model_kwargs: dict                  # zoo.create(info.name, **model_kwargs): stored in the meta
    model: nn.Module                    # for the plan: axis_name=AXIS, dtype of the precision, conv_impl
    plan: parallel.Plan
    input_shape: tuple[int, int, int]   # (H, W, C) of one example
    step_config: step.StepConfig
    train_pipe: data.Pipeline | None = None
    eval_pipe: data.Pipeline | None = None
    tx: optax.GradientTransformation | None = None
    schedule: optax.Schedule | None = None   # counts optimizer updates (train.optim.make_optimizer)
    steps_per_epoch: int = 0
    total_steps: int = 0

    def fresh_state(self) -> step.TrainState:
        """A newly initialised state (seeded by ``config.seed``) as host numpy arrays."""
        state = step.create_state(self.model, self.tx, rng=jax.random.PRNGKey(self.config.seed),
                                  **_state_args(self.config, self.input_shape))
        return jax.tree.map(np.asarray, state)

    def abstract_state(self) -> step.TrainState:
        """The state's structure, shapes and dtypes (a template to restore a checkpoint into)."""
        return step.abstract_state(self.model, self.tx, **_state_args(self.config, self.input_shape))

    def compile_train(self):
        """The train step for the plan: ``(device state, device batch) -> (state, metrics)``."""
        fn = functools.partial(step.train_step, model=self.model, tx=self.tx, cfg=self.step_config)
        return parallel.compile_step(fn, self.plan)

    def compile_train_ahead(self, fn) -> zoo.compiling.Ahead | None:
        """``fn`` (:meth:`compile_train`'s) compiled in a background thread for the state and batches
        the loop will give it (:class:`zoo.compiling.Ahead`); None for pmap plans (compiled at the first call)."""
        if self.plan.parallelism == "pmap":
            return None
        return zoo.compiling.Ahead(fn, lambda: (parallel.abstract_replicated(self.abstract_state(), self.plan),
                                                parallel.abstract_batch(self.train_pipe.element_spec, self.plan)))

    def meta(self) -> dict:
        """The self-description stored with every checkpoint (what :func:`for_checkpoint` reads)."""
        return {"model": self.config.model, "model_kwargs": self.model_kwargs,
                "num_classes": self.model_kwargs["num_classes"], "class_names": list(self.train_pipe.class_names),
                "preprocessing": self.eval_pipe.preprocessing, "train_preprocessing": self.train_pipe.preprocessing,
                "precision": self.config.precision, "config": json.loads(self.config.to_json_best_effort()),
                "steps_per_epoch": self.steps_per_epoch}


# ----------------------------------------------------------------------------- models

def _config_kwargs(config) -> dict:
    return dict(config.model_kwargs.to_dict() if isinstance(config.model_kwargs, ml_collections.ConfigDict)
                else config.model_kwargs or {})


def _refuse_execution_args(kw: dict) -> None:
    chosen = [k for k in EXECUTION_ARGS if k in kw]
    if chosen:
        raise ValueError(f"model_kwargs.{chosen[0]}: chosen by the training setup from the precision and the "
                         f"devices, not a model_kwargs field (allowed: the model's constructor arguments except "
                         f"{', '.join(EXECUTION_ARGS)})")
    if "param_dtype" in kw and not _is_float32(kw["param_dtype"]):
        # bfloat16 weights lost most small updates (5.6% of LeNet-5's moved where float32's 79% did), and
        # float16's loss scaling failed to compile with them
        raise ValueError(f"model_kwargs.param_dtype={kw['param_dtype']!r}: training keeps float32 parameters, "
                         f"optimizer state and EMA; precision=bfloat16 / float16 computes in half precision")


def _is_float32(dtype) -> bool:
    try:
        return np.dtype(dtype) == np.float32
    except TypeError:   # not a dtype at all: the model's own check names it
        return True


def check_model(config) -> None:
    """``model`` names a model of the zoo, and ``model_kwargs`` holds only constructor options a config
    may set: not those chosen here (:data:`EXECUTION_ARGS`); ``num_classes`` is checked against the
    dataset by :func:`model_kwargs`. One ValueError line naming the field (zoo.create's own message
    names neither the field nor what the training command accepts)."""
    name, names = config.model, zoo.list_models()
    if not isinstance(name, str) or name not in names:
        close = zoo.registry.closest_names(name)
        hint = f"closest: {', '.join(close)}; " if close else ""
        raise ValueError(f"model={name!r}: not a model of the zoo; {hint}python -m zoo lists them all")
    kw = _config_kwargs(config)
    _refuse_execution_args(kw)
    allowed = [o for o in zoo.model_info(name).options() if o not in (*EXECUTION_ARGS, "num_classes")]
    unknown = sorted(set(kw) - set(allowed) - {"num_classes"})
    if unknown:
        fields = ", ".join(f"model_kwargs.{k}" for k in unknown)
        raise ValueError(f"{fields}: not {'an option' if len(unknown) == 1 else 'options'} of {name}; allowed: "
                         f"{', '.join(allowed) or 'none'} (num_classes: set by the dataset)")


def model_kwargs(config, num_classes: int) -> dict:
    """Constructor arguments saved with checkpoints: ``zoo.create(config.model, **model_kwargs)``."""
    kw = _config_kwargs(config)
    _refuse_execution_args(kw)
    if "num_classes" in kw and (isinstance(kw["num_classes"], bool) or not isinstance(kw["num_classes"], int)
                                or kw["num_classes"] != num_classes):
        raise ValueError(f"model_kwargs.num_classes={kw['num_classes']!r} but dataset {config.data.name!r} "
                         f"has {num_classes} classes (leave it out: the dataset sets it)")
    kw["num_classes"] = num_classes
    return {**_published_overrides(config), **kw}


PRETRAINED = "pretrained:"


def published_entry(init_from: str, model_name: str):
    """The catalogue entry (``zoo.weights.catalogue.WeightEntry``) that ``transfer.init_from=
    'pretrained:MODEL[:TAG]'`` names for a ``model_name`` run; None when ``init_from`` is a path.
    A spec that names no entry, or another architecture's, is one ValueError line naming the field."""
    if not str(init_from).startswith(PRETRAINED):
        return None
    from zoo.weights import catalogue  # noqa: PLC0415

    try:
        name, tag = catalogue.parse_spec(str(init_from)[len(PRETRAINED):])
    except ValueError:
        raise ValueError(f"transfer.init_from={init_from!r}: pretrained:MODEL or pretrained:MODEL:TAG (e.g. "
                         f"pretrained:resnet50:IMAGENET1K_V2), or a weight file or workdir") from None
    if name != model_name:
        raise ValueError(f"transfer.init_from={init_from!r} but config.model is {model_name!r}: weights of one "
                         f"architecture do not fit another; use pretrained:{model_name}")
    try:
        return catalogue.entry(name, tag)
    except ValueError as e:
        raise ValueError(f"transfer.init_from={init_from!r}: {e}") from None


def _published_overrides(config) -> dict:
    """Options published weights need (googlenet / inception_v3: ``transform_input=True``, as torchvision
    sets when its weights are loaded) when ``transfer.init_from`` is ``'pretrained:MODEL[:TAG]'``."""
    entry = published_entry(config.get("transfer", {}).get("init_from") or "", config.model)
    if entry is None:
        return {}
    options = zoo.model_info(config.model).options()
    return {k: v for k, v in entry.model_overrides if k in options}


def create_model(name: str, kwargs: dict, precision: str = "float32", plan: parallel.Plan | None = None, *,
                 compile_cache: str = "auto"):
    """``zoo.create(name, **kwargs)`` for the devices that run it: ``dtype`` of ``precision``,
    ``conv_impl`` for the plan's platform (no plan: the default device's), and with a plan
    ``axis_name=AXIS`` (BatchNorm synchronised across the step's devices). Everything that compiles
    a model builds it here, so the persistent compilation cache is set here, once
    (``zoo.compiling.use_compile_cache(compile_cache)``: the config's ``compile_cache``)."""
    if precision not in step.PRECISIONS:
        raise ValueError(f"precision={precision!r}: allowed values are {tuple(step.PRECISIONS)}")
    zoo.compiling.use_compile_cache(compile_cache)
    device = plan.devices[0] if plan is not None else jax.devices()[0]
    return zoo.create(name, axis_name=parallel.AXIS if plan is not None else None, dtype=step.PRECISIONS[precision],
                      conv_impl=zoo.convs.conv_impl_for(device.platform), **kwargs)


# ----------------------------------------------------------------------------- training runs

def check_length(config) -> None:
    """A run's length: ``num_epochs`` finite and > 0 unless ``num_train_steps`` is set (ValueError naming
    the field; ``inf`` was an OverflowError once the steps were counted)."""
    epochs = config.num_epochs
    if config.num_train_steps <= 0 and not (is_finite_number(epochs) and epochs > 0):
        raise ValueError(f"num_epochs={epochs!r}: must be > 0 and finite (or set num_train_steps > 0)")


def check_init_from(config) -> None:
    """``transfer.init_from`` is None (train from scratch) or names a source: a blank one (an unset shell
    variable, ``--config.transfer.init_from=$WEIGHTS``) trained from scratch without a word."""
    init_from = config.get("transfer", {}).get("init_from")
    if init_from is not None and not str(init_from).strip():
        raise ValueError(f"transfer.init_from={init_from!r}: empty; name a weight file, a workdir or "
                         f"pretrained:MODEL (none: train from scratch)")


def check_intervals(config) -> None:
    """How often a run logs, checkpoints and evaluates: ``log_every_steps`` and ``checkpoint.every_steps``
    ints >= 1, ``eval_every_epochs`` > 0 (ValueError naming the field, before anything is compiled)."""
    for field, value in (("checkpoint.every_steps", config.checkpoint.every_steps),
                         ("log_every_steps", config.log_every_steps)):
        check(isinstance(value, int) and not isinstance(value, bool) and value >= 1, field, value,
              "must be an int >= 1 (train steps)")
    every = config.eval_every_epochs
    check(isinstance(every, (int, float)) and not isinstance(every, bool) and 0 < every < math.inf,
          "eval_every_epochs", every, "must be > 0 (epochs; 0.5: twice an epoch)")


def build(config, *, workdir: str | Path | None = None, inject: tuple[str, ...] = (), trial_devices: int = 1) -> Run:
    """The run of ``config`` (``fit``): plan, both pipelines, model, optimizer, step config. With
    ``workdir``: a workdir holding checkpoints of another model or class count is refused
    (``checkpoint.WorkdirMismatchError``); nothing is written here. A search group's run
    (``train.search``) keeps the optimizer fields ``inject`` in the optimizer state and may put
    ``trial_devices`` on a trial axis (``train.optim.make_optimizer``, ``train.parallel.make_plan``)."""
    check_length(config)
    check_intervals(config)
    check_model(config)
    check_init_from(config)
    plan = parallel.make_plan(config.parallelism, config.num_devices, trial_devices)
    parallel.check_batch(config.batch_size, plan, "batch_size")
    parallel.check_batch(config.eval_batch_size, plan, "eval_batch_size")
    train_pipe = data.from_config(config, train=True)
    eval_pipe = data.from_config(config, train=False)
    kwargs = model_kwargs(config, train_pipe.num_classes)
    if workdir is not None:
        _refuse_another_model(workdir, config.model, kwargs["num_classes"], train_pipe)
    if train_pipe.skipped:
        log.warning("%d unreadable images skipped", len(train_pipe.skipped))
    steps_per_epoch = train_pipe.steps_per_epoch
    total_steps = (int(config.num_train_steps) if config.num_train_steps > 0
                   else int(math.ceil(config.num_epochs * steps_per_epoch)))
    return make(config, plan=plan, model_kwargs=kwargs, input_shape=train_pipe.image_shape,
                steps_per_epoch=steps_per_epoch, total_steps=total_steps, train_pipe=train_pipe, eval_pipe=eval_pipe,
                inject=inject)


def make(config, *, plan: parallel.Plan, model_kwargs: dict, input_shape, steps_per_epoch: int, total_steps: int,
         train_pipe: data.Pipeline | None = None, eval_pipe: data.Pipeline | None = None,
         inject: tuple[str, ...] = ()) -> Run:
    """A training run from its figures, without data (``build`` and the benchmarks): model for the
    plan, :class:`train.optim.Freezing` resolved once, optimizer, step config."""
    info = zoo.model_info(config.model)
    model = create_model(config.model, model_kwargs, config.precision, plan,
                         compile_cache=config.get("compile_cache", _DEFAULTS.compile_cache))
    freezing = optim.Freezing.from_config(config, info.head)
    if freezing.backbone_lr_mult != 1.0 and freezing.freeze == "backbone":
        log.warning("transfer.backbone_lr_mult=%r: has nothing to act on with transfer.freeze='backbone' (the "
                    "backbone is frozen)", freezing.backbone_lr_mult)
    elif freezing.backbone_lr_mult == 0.0:
        log.warning("transfer.backbone_lr_mult=0.0 stops the backbone's weights but not its BatchNorm statistics; "
                    "transfer.freeze='backbone' freezes both")
    tx, schedule = optim.make_optimizer(config, steps_per_epoch=steps_per_epoch, total_steps=total_steps,
                                        freezing=freezing, inject=inject)
    stats_trainable = None
    if freezing.freeze != "none":  # otherwise every statistic trains: the same program as no mask
        # (tx.init runs here too: a freeze regex matching no parameter fails now, before any writing)
        stats = step.abstract_state(model, tx, **_state_args(config, input_shape)).batch_stats
        stats_trainable = freezing.trainable(stats) if stats else None
    cfg = step.StepConfig(loss=config.loss, label_smoothing=config.label_smoothing,
                          ema_decay=config.optimizer.ema_decay,
                          ema_warmup=config.optimizer.get("ema_warmup", _DEFAULTS.optimizer.ema_warmup),
                          stats_trainable=stats_trainable,
                          aux_loss_weight=config.get("aux_loss_weight", _DEFAULTS.aux_loss_weight))
    return Run(config, info, model_kwargs, model, plan, tuple(input_shape), cfg, train_pipe, eval_pipe, tx, schedule,
               steps_per_epoch, total_steps)


def _state_args(config, input_shape) -> dict:
    return dict(input_shape=tuple(input_shape), ema=config.optimizer.ema_decay > 0,
                float16=config.precision == "float16")


def _refuse_another_model(workdir, model: str, num_classes: int, train_pipe: data.Pipeline) -> None:
    """A workdir's checkpoints are of this model, class count and classes (in their order: a class
    folder renamed since would have training go on with every label shifted)."""
    if not checkpoint.checkpoint_dir(workdir).is_dir():
        return
    ckpt = checkpoint.Checkpointer(workdir, read_only=True)
    try:
        previous = ckpt.latest_meta()
    finally:
        ckpt.close()
    checkpoint.check_compatible(previous, model=model, num_classes=num_classes, workdir=workdir)
    if previous is not None:
        check_classes(previous, train_pipe, consequence="resuming would train its outputs on other classes; nothing "
                      "was changed: put the classes back as they were, or use another --workdir",
                      error=checkpoint.WorkdirMismatchError)


# ----------------------------------------------------------------------------- checkpoints

def checkpoint_pipeline(meta: dict, *, split: str | None = None, batch_size: int | None = None) -> data.Pipeline:
    """The eval pipeline of a checkpoint's run, from its meta: its data config and preprocessing,
    ``split`` (default: its eval split), ``batch_size`` (default: its eval batch size). ValueError
    when the preprocessing rebuilt here differs from the stored one."""
    cfg, pp = meta["config"], meta["preprocessing"]
    data_cfg = {"empty_classes": "keep", **cfg["data"]}  # runs from before the field kept empty class folders
    data_cfg["augment"] = pp.get("augment", data_cfg.get("augment"))   # as resolved then ('auto' follows the family)
    stored = {k: pp[k] for k in ("eval_resize",) if k in pp}   # the run's (small folders were centre-cropped once)
    pipe = data.load(data_cfg, split=split or cfg["data"]["eval_split"], train=False,
                     batch_size=batch_size or int(cfg["eval_batch_size"]),
                     image_shape=(*pp["image_size"], pp["channels"]), seed=int(cfg.get("seed", 0)),
                     crop_fraction=pp["crop_fraction"], preprocessing=stored)
    if pipe.preprocessing != data.transforms.complete(pp):
        raise ValueError(f"the eval preprocessing rebuilt from the checkpoint differs from the stored one:\n"
                         f"{pipe.preprocessing}\nvs\n{pp}")
    check_classes(meta, pipe)
    return pipe


def check_classes(meta: dict, pipe: data.Pipeline, *, consequence: str = "its scores would be of the wrong classes",
                  error: type[ValueError] = ValueError) -> None:
    """The dataset's classes are the ones the checkpoint was trained on, in its order: a class folder added,
    removed or renamed since would score labels against the wrong outputs. One ``error`` line ending
    with ``consequence``."""
    trained = meta.get("class_names")
    num_classes = int(meta.get("num_classes") or meta["model_kwargs"]["num_classes"])
    now = list(pipe.class_names)
    if (trained is not None and now != list(trained)) or pipe.num_classes != num_classes:
        was = f"{list(trained)[:10]}" if trained is not None else f"{num_classes} classes"
        gone = sorted(set(trained or ()) - set(now))
        new = sorted(set(now) - set(trained or ()))
        diff = "; ".join(x for x in (f"not there now: {gone[:10]}" if gone else "",
                                     f"new: {new[:10]}" if new else "") if x) or "another order"
        raise error(f"data.name={meta['config']['data']['name']!r} now has classes {now[:10]} "
                    f"({pipe.num_classes}); the checkpoint was trained on {was} ({diff}); {consequence}")


def for_checkpoint(meta: dict, *, split: str | None = None) -> Run:
    """The run that evaluates a checkpoint (``train.evaluate``) from its meta alone: its stored
    config, a plan over every device (one device when the eval batch does not divide), the model
    for that plan, the loss it was trained with, and its eval pipeline on ``split``."""
    config = ml_collections.ConfigDict(meta["config"])
    plan = parallel.make_plan(config.get("parallelism", "shard_map"), -1)
    if int(config.eval_batch_size) % plan.num_devices:
        plan = parallel.make_plan(plan.parallelism, 1)
    pipe = checkpoint_pipeline(meta, split=split)
    model = create_model(meta["model"], meta["model_kwargs"], meta.get("precision", "float32"), plan,
                         compile_cache=config.get("compile_cache", _DEFAULTS.compile_cache))
    cfg = step.StepConfig(loss=config.get("loss", "cross_entropy"), label_smoothing=config.get("label_smoothing", 0.0))
    return Run(config, zoo.model_info(meta["model"]), dict(meta["model_kwargs"]), model, plan, pipe.image_shape, cfg,
               eval_pipe=pipe)
