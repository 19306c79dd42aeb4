"""Bad arguments to the analyses of zoo.inspect are one ValueError line naming the argument, before
anything is computed. Each case below was once accepted silently (an all-zero saliency map for class
10 of 10 classes, class 9's model for class 10, integer pixels run unnormalised, neighbours from part
of the images) or failed deep inside JAX or numpy without naming the argument."""
import numpy as np
import pytest

import zoo
from helpers import random_variables
from zoo import inspect as zi

LENET = zoo.create("lenet5")
V = random_variables(LENET, (28, 28, 1))
X = np.random.default_rng(0).normal(size=(2, 28, 28, 1)).astype(np.float32)


@pytest.mark.parametrize("call, message", [
    (lambda: zi.saliency(LENET, V, X, class_index=10), r"^class_index=10: must be an integer in \[0, 10\)$"),
    (lambda: zi.saliency(LENET, V, X, class_index=-1), r"^class_index=-1: must be an integer in \[0, 10\)$"),
    (lambda: zi.saliency(LENET, V, X, class_index=2.7), r"^class_index=2\.7: must be an integer"),
    (lambda: zi.saliency(LENET, V, X, class_index=[1, 2, 3]),
     r"^class_index: one index or 2 of them \(one per image\), got shape \(3,\)$"),
    (lambda: zi.grad_cam(LENET, V, X, class_index=np.array([3, 12])), r"^class_index=12: must be an integer in"),
    (lambda: zi.saliency(LENET, V, (X * 255).astype(np.uint8)),
     r"^x: images of dtype uint8; the analyses take float images normalised as in training"),
    (lambda: zi.saliency(LENET, V, X[:0]), r"^x must be one image \(H, W, C\) or a batch \(B, H, W, C\), got shape "
                                           r"\(0, 28, 28, 1\)$"),
    (lambda: zi.grad_cam(LENET, V, X, layer="f6"),
     r"^layer='f6': Grad-CAM needs a spatial feature tap of LeNet5 \(at least 2x2 for this input\): c1, s2, c3, s4$"),
    (lambda: zi.grad_cam(LENET, V, X, layer=["c3"]), r"^layer=\['c3'\]: Grad-CAM needs a spatial feature tap"),
    (lambda: zi.occlusion(LENET, V, X[0], patch=4, stride=0), r"^stride=0: must be an integer >= 1$"),
    (lambda: zi.occlusion(LENET, V, X[0], patch=0), r"^patch=0: must be an integer >= 1$"),
    (lambda: zi.occlusion(LENET, V, X[0], patch=4.5), r"^patch=4\.5: must be an integer >= 1$"),
    (lambda: zi.occlusion(LENET, V, X[0], stride=-2), r"^stride=-2: must be an integer >= 1$"),
    (lambda: zi.occlusion(LENET, V, X[0], batch_size=-1), r"^batch_size=-1: must be an integer >= 1$"),
    (lambda: zi.occlusion(LENET, V, X[0], fill="grey"), r"^fill='grey': a number"),
    (lambda: zi.occlusion(LENET, V, X[0], class_index=-1), r"^class_index=-1: must be an integer in \[0, 10\)$"),
    (lambda: zi.class_model(LENET, V, 10), r"^class_index=10: must be an integer in \[0, 10\)$"),
    (lambda: zi.class_model(LENET, V, 3, steps=-5), r"^steps=-5: must be an integer >= 0$"),
    (lambda: zi.class_model(LENET, V, 3, init=np.zeros((20, 20, 1))),
     r"^init: a starting image of shape \(28, 28, 1\) \(input_shape\), got \(20, 20, 1\)$"),
    (lambda: zi.neighbours(LENET, V, X[0], X, k=-2), r"^k=-2: must be an integer >= 1$"),
    (lambda: zi.neighbours(LENET, V, X[0], X, k=1.9), r"^k=1\.9: must be an integer >= 1$"),
    (lambda: zi.neighbours(LENET, V, X[0], X, embeddings=np.zeros((1, 84))),
     r"^embeddings: one row per image of images \(2\), got 1"),
    (lambda: zi.neighbours(LENET, V, X[0], X[:0]), r"^images must be one image \(H, W, C\) or a batch"),
    (lambda: zi.neighbours(LENET, V, X[0], np.zeros((2, 32, 32, 1), np.float32)),
     r"^images: a batch \(N, H, W, C\) of the query's size \(28, 28, 1\), got shape \(2, 32, 32, 1\)$"),
    (lambda: zi.embed(LENET, V, X, batch_size=0), r"^batch_size=0: must be an integer >= 1$"),
    (lambda: zi.nearest_neighbours(np.zeros(3), np.zeros((4, 5))), r"^database: rows of 3 values like the query's"),
    (lambda: zi.feature_maps(LENET, V, X, ["c3"]), r"^layer=\['c3'\]: one tap name or module path \(a str\)"),
    (lambda: zi.first_layer_filters(LENET, random_variables(zoo.create("resnet18"), (32, 32, 3))),
     r"^variables: LeNet5 keeps its first convolution's \(5, 5, 1, 6\) kernel at params/conv1/kernel; these "
     r"variables have \(7, 7, 3, 64\) there \(another model's variables\?\)$"),
    (lambda: zi.apply_filter(np.zeros((8, 8)), "sobel_vertical", stride=0), r"^stride=0: must be an integer >= 1$"),
    (lambda: zi.apply_filter(np.zeros((8, 8)), "sobel_vertical", stride=1.5), r"^stride=1\.5: must be an integer"),
    (lambda: zi.apply_filter(np.zeros((8, 8)), "sobel_vertical", padding=-1), r"^padding=-1: must be an integer >= 0$"),
    (lambda: zi.apply_filter(np.zeros((2, 2)), "sobel_vertical"),
     r"^image: 2x2 \(padded by 0\) is smaller than the 3x3 kernel$"),
    (lambda: zi.apply_filter(np.zeros((8, 8)), np.ones(3)), r"^kernel: a 2-D array \(kh, kw\) or a name of FIXED_FILTERS"),
])
def test_a_bad_argument_is_one_line_naming_it(call, message):
    with pytest.raises(ValueError, match=message) as e:
        call()
    assert "\n" not in str(e.value)


@pytest.mark.integration
def test_the_good_forms_still_work():
    """One index for every image, one per image, numpy integers; features takes one name as a str."""
    assert zi.saliency(LENET, V, X, class_index=np.int64(3)).shape == (2, 28, 28)
    assert zi.saliency(LENET, V, X, class_index=[1, 2]).shape == (2, 28, 28)
    assert zi.neighbours(LENET, V, X[0], X, k=5)["feature"][0].shape == (2,)  # at most the images there are
    assert zoo.features(LENET, V, X, "c3")["c3"].shape == (2, 10, 10, 16)
    resnet = zoo.create("resnet18", small_input=True)  # train=True: BatchNorm's statistics may be written
    maps = zoo.features(resnet, random_variables(resnet, (8, 8, 3)), np.zeros((2, 8, 8, 3), np.float32),
                        ["layer1", "layer1_0/bn1"], train=True)
    assert maps["layer1"].shape == (2, 8, 8, 64) and maps["layer1_0/bn1"].shape == (2, 8, 8, 64)
