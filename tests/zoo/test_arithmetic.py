"""zoo.arithmetic: the convolution arithmetic of the lecture notes (output sizes, parameter counts) and the
argument checks of the numeric helpers and the models' pools. Every bad argument is one ValueError line
naming it, where torch 2.13 refuses too (its messages quoted; checked with /work/torch-ref, 2026-12-02);
the worked examples themselves are in test_layers.py."""
import numpy as np
import pytest

from zoo import arithmetic, layers


def test_layers_re_exports_the_arithmetic():
    assert layers.conv_output_size is arithmetic.conv_output_size and layers.conv_params is arithmetic.conv_params


@pytest.mark.parametrize("n, f, p, s, d, out", [(227, 11, 0, 4, 1, 55), (7, 3, 1, 2, 1, 4), (32, 3, 2, 1, 2, 32),
                                                (10, 3, 0, 1, 3, 4), (5, 5, 0, 1, 1, 1)])
def test_output_size_is_torchs(n, f, p, s, d, out):
    # torch: F.conv2d(ones(1, 1, n, n), ones(1, 1, f, f), stride=s, padding=p, dilation=d).shape[-1]
    assert arithmetic.conv_output_size(n, f, p, s, d) == out and type(out) is int


@pytest.mark.parametrize("p", [0.5, True, None, "1", -1])
def test_output_size_padding_is_an_integer_at_least_zero(p):
    # was: 0.5 -> 4.0, True -> 5 (taken as 1), None / '1' -> TypeError from '<'; torch takes int padding only
    with pytest.raises(ValueError, match=rf"^p={p!r}: must be an integer >= 0$"):
        arithmetic.conv_output_size(5, 3, p, 1)


@pytest.mark.parametrize("args, kw, message", [
    ((-3, 8, 3), {}, r"^in_channels=-3: must be an integer >= 1$"),    # torch: negative dimension -3 (was -208)
    ((3, -8, 3), {}, r"^out_channels=-8: must be an integer >= 1$"),
    ((3, 0, 3), {}, r"^out_channels=0: must be an integer >= 1$"),
    ((3.0, 8, 3), {}, r"^in_channels=3\.0: must be an integer >= 1$"),  # torch: TypeError (was 224.0)
    ((3, 8, 0), {}, r"^kernel_size=0: must be an integer >= 1 or a pair \(kh, kw\) of them$"),  # was 8
    ((3, 8, -3), {}, r"^kernel_size=-3: "),                              # torch: negative dimension (was 224)
    ((3, 8, (3, 3, 3)), {}, r"^kernel_size=\(3, 3, 3\): "),             # was 'too many values to unpack'
    ((3, 8, (3, 2.5)), {}, r"^kernel_size=\(3, 2\.5\): "),
    ((4, 8, 3), {"groups": 0}, r"^groups=0: must be an integer >= 1$"),  # torch: groups must be a positive integer
    ((4, 8, 3), {"groups": -2}, r"^groups=-2: must be an integer >= 1$"),  # (was ZeroDivisionError / a count)
    ((6, 8, 3), {"groups": 4}, r"^groups=4 must divide in_channels=6"),  # torch: in_channels must be divisible
    ((3, 8, 3), {"bias": "no"}, r"^bias='no': must be True or False$"),  # was 224: the string taken as True
    ((3, 8, 3), {"bias": 0}, r"^bias=0: must be True or False$"),
])
def test_conv_params_refuses_nonsense(args, kw, message):
    with pytest.raises(ValueError, match=message):
        arithmetic.conv_params(*args, **kw)


@pytest.mark.parametrize("args, kw, params", [((3, 8, 3), {}, 224), ((3, 8, (3, 5)), {}, 368),
                                              ((32, 32, 3), {"groups": 32, "bias": False}, 288),
                                              ((64, 32, 1), {}, 2_080), ((3, 96, np.int64(11)), {}, 34_944)])
def test_conv_params_is_torchs_numel(args, kw, params):
    # torch: sum(p.numel() for p in nn.Conv2d(in, out, k, groups=g, bias=b).parameters())
    assert arithmetic.conv_params(*args, **kw) == params


@pytest.mark.parametrize("args, message", [
    ((3, 1, 2), r"^padding=2: at most window // 2 = 1 "),   # torch: pad should be at most half of effective kernel size
    ((2, 2, 2), r"^padding=2: at most window // 2 = 1 "),
    ((3, 1, -1), r"^padding=-1: must be an integer >= 0$"),  # torch: pad must be non-negative
    ((0, 1, 0), r"^window=0: must be an integer >= 1$"),     # torch: kernel size should be greater than zero
    ((3, 0, 0), r"^stride=0: must be an integer >= 1$"),     # torch: stride should not be zero
    ((3.0, 1, 0), r"^window=3\.0: "), ((3, 1, 0.5), r"^padding=0\.5: "), ((3, None, 0), r"^stride=None: "),
])
def test_check_pool(args, message):
    with pytest.raises(ValueError, match=message):
        arithmetic.check_pool(*args)


def test_check_pool_window_must_fit_the_padded_input():
    arithmetic.check_pool(3, 2, 1, (1, 1))  # 1 + 2 >= 3: torch's MaxPool2d(3, 2, 1) gives 1x1
    arithmetic.check_pool(2, 1, 1, (5, 5))  # padding = window / 2 is allowed (torch: 6x6)
    arithmetic.check_pool(3, 2, 0, (2, 2), ceil_mode=True)  # torch's MaxPool2d(3, 2, ceil_mode=True) on 2x2: 1x1
    # torch: "Output size is too small" (2,508 sizes, windows, strides, pads, ceil modes: refused exactly when torch's is)
    with pytest.raises(ValueError, match=r"^window=3 does not fit the 2x2 input with padding=0$"):
        arithmetic.check_pool(3, 2, 0, (2, 2))
    with pytest.raises(ValueError, match=r"^window=7 does not fit the 5x5 input with padding=0$"):
        arithmetic.check_pool(7, 1, 0, (5, 5))
