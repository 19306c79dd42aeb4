"""zoo.checks: the argument checks every model and layer shares, one ValueError line naming the argument."""
import jax.numpy as jnp
import numpy as np
import pytest

from zoo import checks


@pytest.mark.parametrize("values, length", [((1, 2, 0, 3), 4), ((1, 2, 3), 4), ((), None), (5, None), ((1, True), None),
                                            ([2.0], None)])
def test_positive_ints_check_names_the_argument(values, length):
    with pytest.raises(ValueError, match=r"^layers=.*: must list (4|one or more) integers >= 1$"):
        checks.check_positive_ints("layers", values, length)


def test_positive_ints_check_passes_good_values():
    checks.check_positive_ints("layers", (3, 4, 6, 3), 4)
    checks.check_positive_ints("block_config", [6, np.int64(12)])


def test_choice_check_does_not_take_a_bool_for_a_number():
    with pytest.raises(ValueError, match=r"groups=True: allowed values are \(1, 2, 3\)"):
        checks.check_choice("groups", True, (1, 2, 3))
    checks.check_choice("groups", 1, (1, 2, 3))
    checks.check_choice("remat", True, (True, False))


@pytest.mark.parametrize("value", [0, 1, "no", "False", None, np.bool_(True)])
def test_bool_check_takes_only_true_or_false(value):
    """A truthy string such as "no" once built resnet18's small-input stem: another network."""
    with pytest.raises(ValueError, match=rf"^small_input={value!r}: must be True or False$"):
        checks.check_bool("small_input", value)
    checks.check_bool("small_input", True)
    checks.check_bool("small_input", False)


@pytest.mark.parametrize("value", ["fp16", "float16x", "int8", jnp.int32, "bool", 5])
def test_float_dtype_check_names_the_argument(value):
    with pytest.raises(ValueError, match=r"^dtype=.*: must be a floating dtype, e\.g\. jnp\.float32, jnp\.bfloat16 or "
                                         r"'float16'$"):
        checks.check_float_dtype("dtype", value)
    for good in (jnp.float32, jnp.bfloat16, "float16", np.float64):
        checks.check_float_dtype("dtype", good)


@pytest.mark.parametrize("value", ["1e-5", None, True, 0.0, -1])
def test_positive_check_takes_numbers_only(value):
    with pytest.raises(ValueError, match=rf"^bn_epsilon={value!r}: must be a number > 0$"):
        checks.check_positive("bn_epsilon", value)


@pytest.mark.parametrize("call, message", [
    (lambda zoo: zoo.init("resnet18", (32, 32, 3)), r"^model='resnet18': a model object, e\.g\. zoo\.create\('resnet18'\)"),
    (lambda zoo: zoo.init(zoo.create("lenet5"), 28), r"^input_shape=28: \(H, W, C\) of one image, e\.g\. \(224, 224, 3\)$"),
    (lambda zoo: zoo.summary(zoo.create("lenet5"), (28.0, 28.0, 1.0)), r"^input_shape=\(28\.0, 28\.0, 1\.0\): \(H, W, C\)"),
    (lambda zoo: zoo.macs(zoo.create("lenet5"), (1, 28, 28, 1)), r"^input_shape=\(1, 28, 28, 1\): \(H, W, C\)"),
    (lambda zoo: zoo.feature_names("vgg16", (224, 224, 3)), r"^model='vgg16': a model object"),
    (lambda zoo: zoo.param_count(None), r"^variables: a model's variables or params \(a dict\), got NoneType"),
    (lambda zoo: zoo.param_count(zoo.create("lenet5")), r"^variables: .*got LeNet5; for a model, zoo\.param_count\("),
])
def test_models_and_input_shapes_are_checked_where_the_analyses_take_them(call, message):
    """Once AttributeError ('str' object has no attribute 'init'), a TypeError from unpacking an int,
    or for param_count(None) a silent 0."""
    import zoo

    with pytest.raises(ValueError, match=message):
        call(zoo)


def test_groups_zero_is_one_line_not_a_division_by_zero():
    """``Ops.conv(groups=0)`` raised ZeroDivisionError from the divisibility check (arith_probe)."""
    from zoo.checks import check_groups

    with pytest.raises(ValueError, match=r"^groups=0: must be an integer >= 1$"):
        check_groups(0, 4, 4)
