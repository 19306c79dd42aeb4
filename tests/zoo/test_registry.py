"""Registry-wide checks: every registered variant against the published figures vendored in
tests/fixtures/reference.json (and the registry's own record of them), one literal definition per
variant, the module contract, the error paths. Shape and parameter checks use jax.eval_shape (no
compilation)."""
import functools
import inspect
import re
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import zoo
from helpers import abstract_variables, images, inner_loop_sample, key, random_variables, reference, run_once, traced
from zoo.__main__ import stored_counts

ALL = zoo.list_models()


def counts(name):
    rows, _ = traced(name)
    return sum(r.params for r in rows), sum(r.macs for r in rows)


def published(name) -> dict:
    """The vendored figures of a variant as the registry records them: params, params_approx, macs,
    input_size. lenet5_classic: the paper's 60,000 parameters up to F6 plus our Dense output layer
    (84 * 10 + 10; the paper's output is a fixed RBF layer, see zoo.lenet.LeNet5Classic). Models with
    auxiliary classifiers are built with them (aux_logits=True, as torchvision's constructors): their
    count with them; the MACs are the inference pass's (auxiliary classifiers off)."""
    ref = reference()["models"][name]
    params = ref.get("params_with_aux", ref.get("params"))
    if name == "lenet5_classic":
        params = ref["params_through_f6"] + 84 * 10 + 10
    return dict(params=params, params_approx=ref.get("params_approx"),
                macs=ref["gmacs"] * 1e9 if "gmacs" in ref else None, input_size=ref["input_size"])


@pytest.mark.parametrize("name", ALL)
def test_registry_figures_are_the_vendored_ones(name):
    info, ref = zoo.model_info(name), published(name)
    assert (info.params, info.params_approx, info.input_size) == (ref["params"], ref["params_approx"],
                                                                   ref["input_size"])
    assert info.macs == pytest.approx(ref["macs"], rel=1e-9) if ref["macs"] else info.macs is None


@pytest.mark.parametrize("name", ALL)
def test_every_variant_is_one_literal_definition(name):
    """``def resnet50(`` stands once in the family's file, next to the class it builds."""
    info = zoo.model_info(name)
    builder = info.builder
    assert builder.__name__ == name and builder.__module__ == info.cls.__module__ == f"zoo.{info.family}"
    assert re.search(rf"^def {name}\(", inspect.getsource(builder), re.M)
    family_source = inspect.getsource(sys.modules[builder.__module__])
    assert len(re.findall(rf"^def {name}\(", family_source, re.M)) == 1


@pytest.mark.parametrize("name", ALL)
def test_create_returns_a_module(name):
    info = zoo.model_info(name)
    model = zoo.create(name)
    assert isinstance(model, nn.Module) and type(model) is info.cls
    assert {k: getattr(model, k) for k in info.kwargs} == info.kwargs
    other = zoo.create(name, num_classes=3)
    assert isinstance(other, info.cls) and other.num_classes == 3


def test_registry_holds_all_families():
    families = {zoo.model_info(n).family for n in ALL}
    assert families == {"lenet", "alexnet", "vgg", "resnet", "densenet", "mobilenet", "shufflenet", "googlenet",
                        "inception", "squeezenet", "mnasnet",
                        "efficientnet"}


@pytest.mark.parametrize("name", inner_loop_sample(ALL))
def test_model_info_is_complete(name):
    info = zoo.model_info(name)
    assert info.name == name and info.paper and info.input_size > 0 and info.head
    assert (info.params, info.params_approx, info.macs) != (None, None, None), "every variant needs a reference figure"
    params = traced(name)[1]["params"]
    assert set(info.head) <= set(params), f"head modules {info.head} not among {sorted(params)}"
    assert counts(name)[0] == zoo.param_count(traced(name)[1])
    # zoo/model_counts.json, which README's table and `python -m zoo` print from, holds the model's own counts
    assert stored_counts().get(name) == counts(name), "run: python -m zoo --update-counts"


@pytest.mark.parametrize("name", [n for n in ALL if published(n)["params"] is not None])
def test_param_count_exact(name):
    assert counts(name)[0] == published(name)["params"] == zoo.model_info(name).params


def _parse_approx(text):
    """'0.27M' -> (270000, 5000): the value and half its last printed digit."""
    m = re.fullmatch(r"(\d+(?:\.(\d+))?)([KM])", text)
    scale = {"K": 1e3, "M": 1e6}[m.group(3)]
    decimals = len(m.group(2) or "")
    return float(m.group(1)) * scale, 0.5 * scale * 10.0 ** -decimals


@pytest.mark.parametrize("name", [n for n in ALL if published(n)["params_approx"] is not None])
def test_param_count_matches_published_rounding(name):
    value, tol = _parse_approx(published(name)["params_approx"])
    assert abs(counts(name)[0] - value) <= tol


@pytest.mark.parametrize("name", [n for n in ALL if published(n)["macs"] is not None])
def test_macs_within_5_percent(name):
    ref = published(name)["macs"]
    assert abs(counts(name)[1] - ref) <= 0.05 * ref


def test_macs_agree_with_xla_cost_analysis():
    """Our exact count against an independent one: XLA's FLOPs of the lowered program (~2 per MAC)."""
    from zoo.summary import xla_flops
    model = zoo.create("resnet20")
    ours = zoo.macs(model, (32, 32, 3))
    assert 0.9 <= xla_flops(model, (32, 32, 3)) / (2 * ours) <= 1.2


# ---------------------------------------------------------------------- forward passes (compiled)

# One main variant per family (the smallest usual one), plus every LeNet / CIFAR model.
REPRESENTATIVES = ("lenet5", "alexnet", "vgg11", "resnet18", "densenet121", "mobilenet_v2", "shufflenet_v2_x0_5",
                   "googlenet", "inception_v3", "squeezenet1_1", "mnasnet0_5",
                   "efficientnet_b0")


def _one_per_family():
    assert {zoo.model_info(n).family for n in REPRESENTATIVES} == {zoo.model_info(n).family for n in ALL}
    return sorted(set(REPRESENTATIVES) | {n for n in ALL if zoo.model_info(n).input_size <= 32})


def _small_input(name):
    info = zoo.model_info(name)
    spec = zoo.create(name).input_spec()
    size = spec.exact_size or max(spec.min_size, min(info.input_size, 32))
    return images((2, size, size, spec.channels))


@functools.lru_cache(maxsize=None)
def _forward_setup(name):
    """``(model with 7 classes, small input, random variables)``, shared by the forward-pass tests."""
    model = zoo.create(name, num_classes=7)
    x = _small_input(name)
    return model, x, random_variables(model, x.shape[1:])


@pytest.mark.parametrize("name", inner_loop_sample(_one_per_family()))
def test_forward_small_input(name):
    model, x, variables = _forward_setup(name)
    assert set(variables) <= {"params", "batch_stats"}
    logits = run_once(lambda v, x: model.apply(v, x, train=False), variables, x)
    assert logits.shape == (2, 7)
    assert np.isfinite(np.asarray(logits)).all()


@functools.lru_cache(maxsize=None)
def _resnet20_init():
    return zoo.init(zoo.create("resnet20"), (32, 32, 3), rng=key(0))


def test_train_mode_updates_batch_stats_eval_mode_does_not():
    model = zoo.create("resnet20")
    x = _small_input("resnet20")
    v = _resnet20_init()

    def both(v, x):
        return (model.apply(v, x, train=True, mutable=["batch_stats"])[1],
                model.apply(v, x, train=False, mutable=["batch_stats"])[1])

    upd, same = run_once(both, v, x)
    changed = jax.tree.map(lambda a, b: not np.allclose(a, b), v["batch_stats"], upd["batch_stats"])
    assert all(jax.tree.leaves(changed))
    jax.tree.map(np.testing.assert_array_equal, v["batch_stats"], same["batch_stats"])


@pytest.mark.integration
def test_dropout_only_in_train_mode_with_rng():
    name = "vgg11"  # classifier dropout (0.5 by default), accepts 32x32
    assert "dropout" in zoo.model_info(name).options()
    model, x, v = _forward_setup(name)
    assert model.dropout == 0.5
    mut = ["batch_stats"] if "batch_stats" in v else []

    @jax.jit  # one program, run with two dropout keys
    def run(v, x, key):
        return (model.apply(v, x, train=False), model.apply(v, x, train=False, rngs={"dropout": key}),
                model.apply(v, x, train=True, rngs={"dropout": key}, mutable=mut)[0])

    (eval1, eval1_rng, t1), (eval2, eval2_rng, t2) = run(v, x, key(1)), run(v, x, key(2))
    np.testing.assert_array_equal(eval1, eval2)
    np.testing.assert_array_equal(eval1, eval1_rng)  # eval ignores a dropout rng
    np.testing.assert_array_equal(eval1, eval2_rng)
    assert not np.allclose(t1, t2)
    with pytest.raises(Exception, match="(?i)rng|dropout"):
        jax.eval_shape(lambda v: model.apply(v, x, train=True, mutable=mut), v)


def test_norm_options_build_every_kind():
    for norm in ("batch", "group", "layer", "instance"):
        v = abstract_variables("resnet20", norm=norm)
        assert ("batch_stats" in v) == (norm == "batch")


def test_dtype_and_param_dtype():
    model = zoo.create("resnet20", dtype=jnp.bfloat16)
    x = _small_input("resnet20")
    v = jax.eval_shape(lambda: model.init(jax.random.key(0), x))  # dtypes are static: nothing to compute
    assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(v))
    assert jax.eval_shape(lambda v: model.apply(v, x), v).dtype == jnp.bfloat16
    v16 = abstract_variables("resnet20", param_dtype=jnp.bfloat16)
    assert all(a.dtype == jnp.bfloat16 for a in jax.tree.leaves(v16["params"]))


def test_zoo_init_compiles_the_whole_init():
    variables = _resnet20_init()
    assert set(variables) == {"params", "batch_stats"}
    assert sum(a.size for a in jax.tree.leaves(variables["params"])) == counts("resnet20")[0]


def test_bn_defaults_are_torch_convention():
    m = zoo.create("resnet50")
    assert (m.bn_momentum, m.bn_epsilon) == (0.9, 1e-5)  # PyTorch momentum 0.1


# ---------------------------------------------------------------------- error paths

def test_unknown_name_lists_closest():
    with pytest.raises(ValueError, match="resnet50"):
        zoo.create("resnet5O")
    with pytest.raises(ValueError, match=r"^unknown model name 'RESNET50'; closest: resnet50"):   # case: none was offered
        zoo.create("RESNET50")


@pytest.mark.parametrize("override, pattern", [
    (dict(num_classes=0), "num_classes"),
    (dict(num_classes=2.5), "num_classes"),
    (dict(norm="batchnorm"), "norm.*allowed"),
    (dict(not_an_option=1), "not_an_option.*allowed"),
    (dict(groups=0), "groups"),
    # once accepted, then failing later in numpy or Flax without the argument's name (or silently, small_input)
    (dict(dtype="fp16"), r"^dtype='fp16': must be a floating dtype"),
    (dict(param_dtype="int8"), r"^param_dtype='int8': must be a floating dtype"),
    (dict(bn_epsilon="1e-5"), r"^bn_epsilon='1e-5': must be a number > 0$"),
    (dict(bn_momentum="0.9"), r"^bn_momentum='0.9': allowed range is \[0, 1\)"),
    (dict(axis_name=5), r"^axis_name=5: the name of a mapped axis \(a str\) or None$"),
    (dict(small_input="no"), r"^small_input='no': must be True or False$"),
])
def test_bad_override(override, pattern):
    with pytest.raises(ValueError, match=pattern):
        abstract_variables("resnet50", (64, 64, 3), **override)


@pytest.mark.parametrize("name, override, pattern", [
    ("shufflenet_v1", dict(groups=5), "groups.*allowed"),
    ("mobilenet_v2", dict(width_mult=0.0), "width_mult"),
    ("mobilenet_v1", dict(width_mult=-1.0), "width_mult"),
])
def test_bad_family_override(name, override, pattern):
    with pytest.raises(ValueError, match=pattern):
        zoo.create(name, **override)


@pytest.mark.parametrize("name, override, pattern", [
    ("resnet50", dict(layers=(1, 1, 1, 1)), r"resnet50 fixes layers=\(3, 4, 6, 3\).*zoo.resnet.ResNet"),
    ("shufflenet_v1_g3", dict(groups=8), r"shufflenet_v1_g3 fixes groups=3"),
    ("resnet18", dict(pretrained="resnet18.safetensors"), r"zoo.load_pretrained\('resnet18'"),
])
def test_a_variant_names_the_fields_it_fixes(name, override, pattern):
    with pytest.raises(ValueError, match=pattern):
        zoo.create(name, **override)


@pytest.mark.parametrize("name, override, pattern", [
    ("squeezenet1_0", dict(bn_epsilon=0.5), r"^bn_epsilon=0.5: SqueezeNet has no normalisation layers \(norm=None\)"),
    ("vgg11", dict(bn_momentum=0.5), r"^bn_momentum=0.5: VGG has no normalisation layers \(norm=None\)"),
    ("lenet5_classic", dict(bn_epsilon=0.5), r"^bn_epsilon=0.5: LeNet5Classic has no normalisation layers"),
    ("alexnet_v1", dict(bn_momentum=0.5), r"^bn_momentum=0.5: AlexNetV1 has no normalisation layers"),
    ("resnet20", dict(norm="group", bn_momentum=0.5), r"^bn_momentum=0.5: CifarResNet has group norm layers"),
    ("squeezenet1_1", dict(norm="batch"), r"^norm='batch': allowed values are \(None,\)"),
])
def test_a_norm_option_without_the_layers_it_acts_on_is_refused(name, override, pattern):
    """torchvision's constructors of these models take no BatchNorm arguments; the zoo took them and
    changed nothing (SqueezeNet even took norm='group', with no norm layer to put it in)."""
    with pytest.raises(ValueError, match=pattern):
        zoo.create(name, **override)


def test_norm_options_where_the_layers_are_still_build():
    assert zoo.create("vgg11_bn", bn_epsilon=0.5).bn_epsilon == 0.5
    assert zoo.create("resnet20", norm="group", bn_epsilon=0.5).bn_epsilon == 0.5
    assert zoo.create("squeezenet1_0", axis_name="batch").axis_name == "batch"   # the step's, harmless


def test_a_fixed_field_given_its_own_value_is_accepted():
    """A generic MNIST config passing in_channels=1 to lenet5 was refused ("fixes in_channels=1")."""
    assert zoo.create("lenet5", in_channels=1).in_channels == 1
    assert zoo.create("shufflenet_v1_g3", groups=3).groups == 3
    with pytest.raises(ValueError, match=r"lenet5 fixes in_channels=1"):
        zoo.create("lenet5", in_channels=3)
    # a list for a tuple field: "resnet18 fixes layers=(2, 2, 2, 2)" read like the value given
    assert zoo.create("resnet18", layers=[2, 2, 2, 2]).layers == (2, 2, 2, 2)


@pytest.mark.parametrize("option, closest", [("in_chans", "in_channels"), ("num_class", "num_classes"),
                                             ("drop_rate", "dropout")])
def test_a_misspelt_option_gets_the_closest_names(option, closest):
    """timm's spellings (in_chans, drop_rate) and typos got only the whole list of options."""
    with pytest.raises(ValueError, match=rf"^alexnet does not take option\(s\) '{option}'; closest: .*{closest}"):
        zoo.create("alexnet", **{option: 1})


def test_groups_not_dividing_channels_is_named():
    import flax.linen as nn

    class Grouped(nn.Module):
        @nn.compact
        def __call__(self, x):
            return zoo.layers.Ops().conv(x, 8, 3, groups=3, name="c")

    with pytest.raises(ValueError, match="groups=3 must divide"):
        jax.eval_shape(lambda: Grouped().init(jax.random.key(0), jnp.zeros((1, 8, 8, 6))))


@pytest.mark.parametrize("shape, pattern", [
    ((1, 16, 16, 3), "too small"),
    ((1, 64, 64, 1), "channels"),
    ((64, 64, 3), "rank 4"),
])
def test_bad_input_gives_expected_shape(shape, pattern):
    m = zoo.create("resnet18")
    with pytest.raises(ValueError, match=pattern + r".*expected \(B, H, W, 3\)"):
        jax.eval_shape(lambda: m.init(jax.random.key(0), jnp.zeros(shape)))


def test_integer_images_empty_batches_and_a_train_flag_that_is_not_a_bool_are_refused():
    """uint8 pixels once ran unnormalised (logits of +-80, silently); torchvision's convolutions refuse
    them too. An empty batch was a ZeroDivisionError, ``train="False"`` Flax's immutable-collection error."""
    m = zoo.create("lenet5")
    v = abstract_variables("lenet5", (28, 28, 1))
    for dtype in (jnp.uint8, jnp.int32, jnp.bool_):
        with pytest.raises(ValueError, match=rf"^LeNet5: input of dtype {jnp.dtype(dtype)}; the models take float "
                                             r"images normalised as in training"):
            jax.eval_shape(lambda x: m.apply(v, x), jax.ShapeDtypeStruct((1, 28, 28, 1), dtype))
    with pytest.raises(ValueError, match=r"^LeNet5: empty batch, expected \(B, H, W, 1\)"):
        jax.eval_shape(lambda x: m.apply(v, x), jax.ShapeDtypeStruct((0, 28, 28, 1), jnp.float32))
    for train in ("False", 0, None):
        with pytest.raises(ValueError, match=rf"^train={train!r}: must be True or False"):
            jax.eval_shape(lambda x: m.apply(v, x, train=train), jax.ShapeDtypeStruct((1, 28, 28, 1), jnp.float32))
    with pytest.raises(ValueError, match=r"^train=.*: must be True or False \(under jax\.jit mark it static: "
                                         r"jax\.jit\(model\.apply, static_argnames='train'\)\)"):
        jax.jit(m.apply)(v, np.zeros((1, 28, 28, 1), np.float32), train=False)
    assert m.apply(jax.tree.map(jnp.zeros_like, v), [[[[0.5]] * 28] * 28]).shape == (1, 10)  # a nested list is an array


def test_list_models_pattern():
    assert set(zoo.list_models("resnet*")) >= {"resnet18", "resnet20", "resnet50"}
    assert "vgg16" not in zoo.list_models("resnet*")
    # several patterns, as timm.list_models(filter=[...]) / torchvision's list_models(include=[...])
    both = zoo.list_models(["resnet1*", "vgg1?"])
    assert both == sorted(set(zoo.list_models("resnet1*")) | set(zoo.list_models("vgg1?"))) and "vgg16" in both
    with pytest.raises(ValueError, match=r"^pattern=3: a wildcard such as 'resnet\*', a list of them, or None$"):
        zoo.list_models(3)


def test_summary_totals(capsys):
    rows = zoo.summary(zoo.create("resnet18"), (224, 224, 3))
    assert sum(r.params for r in rows) == 11_689_512
    out = capsys.readouterr().out
    assert "layer1_0/conv1" in out and "11,689,512" in out
