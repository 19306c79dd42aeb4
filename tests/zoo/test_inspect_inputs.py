"""Bad arguments to the analyses of zoo.inspect are one ValueError line naming the argument, before
anything is computed. Each case below was once accepted silently (an all-zero saliency map for class
10 of 10 classes, class 9's model for class 10, integer pixels run unnormalised, neighbours from part
of the images) or failed deep inside JAX or numpy without naming the argument."""
import jax
import numpy as np
import pytest

import zoo
from helpers import random_variables
from zoo import inspect as zi

LENET = zoo.create("lenet5")
V = random_variables(LENET, (28, 28, 1))
X = np.random.default_rng(0).normal(size=(2, 28, 28, 1)).astype(np.float32)
X_NAN = X.copy()
X_NAN[1, 0, 5, 0] = np.nan   # under jit: a plausible prediction, an all-zero saliency map, a finite Grad-CAM
X_INF = X.copy()
X_INF[0, 3, 3, 0], X_INF[1, 4, 4, 0] = np.inf, -np.inf
NON_FINITE = r"NaN or infinite pixel values?; the analyses take finite float images normalised as in training"


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
    (lambda: zi.occlusion(LENET, V, X[0], fill="grey"), r"^fill='grey': a finite number \(the value of the patch"),
    (lambda: zi.occlusion(LENET, V, X[0], fill=float("nan")), r"^fill=nan: a finite number \(the value of the patch"),
    (lambda: zi.occlusion(LENET, V, X[0], fill=np.inf), r"^fill=inf: a finite number \(the value of the patch"),
    (lambda: zi.occlusion(LENET, V, X[0], class_index=-1), r"^class_index=-1: must be an integer in \[0, 10\)$"),
    (lambda: zi.class_model(LENET, V, 10), r"^class_index=10: must be an integer in \[0, 10\)$"),
    (lambda: zi.class_model(LENET, V, 3, steps=-5), r"^steps=-5: must be an integer >= 0$"),
    (lambda: zi.class_model(LENET, V, 3, init=np.zeros((20, 20, 1))),
     r"^init: a starting image of shape \(28, 28, 1\) \(input_shape\), got \(20, 20, 1\)$"),
    # class_model's other arguments: a negative rate descended (an "anti-model"), NaN gave NaN scores, a
    # string normalize was truthy, uint8 pixels were taken as normalised ones
    (lambda: zi.class_model(LENET, V, 3, learning_rate=-1.0),
     r"^learning_rate=-1\.0: must be a finite number > 0 \(a step of gradient ascent\)$"),
    (lambda: zi.class_model(LENET, V, 3, learning_rate=0), r"^learning_rate=0: must be a finite number > 0"),
    (lambda: zi.class_model(LENET, V, 3, learning_rate=float("nan")),
     r"^learning_rate=nan: must be a finite number > 0"),
    (lambda: zi.class_model(LENET, V, 3, learning_rate="x"), r"^learning_rate='x': must be a finite number > 0"),
    (lambda: zi.class_model(LENET, V, 3, learning_rate=True), r"^learning_rate=True: must be a finite number > 0"),
    (lambda: zi.class_model(LENET, V, 3, l2=-5),
     r"^l2=-5: must be a finite number >= 0 \(the weight of \|\|I\|\|\^2\)$"),
    (lambda: zi.class_model(LENET, V, 3, l2=None), r"^l2=None: must be a finite number >= 0"),
    (lambda: zi.class_model(LENET, V, 3, l2=np.inf), r"^l2=inf: must be a finite number >= 0"),
    (lambda: zi.class_model(LENET, V, 3, normalize="False"), r"^normalize='False': must be True or False$"),
    (lambda: zi.class_model(LENET, V, 3, normalize=1), r"^normalize=1: must be True or False$"),
    (lambda: zi.class_model(LENET, V, 3, init=np.zeros((28, 28, 1), np.uint8)),
     r"^init: images of dtype uint8; the analyses take float images normalised as in training"),
    (lambda: zi.class_model(LENET, V, 3, init=X_NAN[1]), r"^init: 1 NaN or infinite pixel value; the analyses"),
    (lambda: zi.grad_cam(LENET, V, X, upsample="no"), r"^upsample='no': must be True or False$"),
    # non-finite images, refused by the common input check
    (lambda: zi.predict(LENET, V, X_NAN), r"^x: 1 " + NON_FINITE),
    (lambda: zi.saliency(LENET, V, X_INF), r"^x: 2 " + NON_FINITE),
    (lambda: zi.grad_cam(LENET, V, X_NAN), r"^x: 1 " + NON_FINITE),
    (lambda: zi.occlusion(LENET, V, X_NAN[1]), r"^x: 1 " + NON_FINITE),
    (lambda: zi.feature_maps(LENET, V, X_INF, "c3"), r"^x: 2 " + NON_FINITE),
    (lambda: zi.neighbours(LENET, V, X_NAN[1], X), r"^query: 1 " + NON_FINITE),
    (lambda: zi.neighbours(LENET, V, X[0], X_INF), r"^images: 2 " + NON_FINITE),
    (lambda: zi.embed(LENET, V, X_NAN), r"^images: 1 " + NON_FINITE),
    # a bool among the indices, as a bare bool (np.asarray([True, 1]) once made it class 1)
    (lambda: zi.saliency(LENET, V, X, class_index=[True, 1]), r"^class_index=True: must be an integer in \[0, 10\)$"),
    (lambda: zi.grad_cam(LENET, V, X, class_index=(2, False)), r"^class_index=False: must be an integer in \[0, 10\)$"),
    (lambda: zi.saliency(LENET, V, X, class_index=np.array([True, False])), r"^class_index=True: must be an integer"),
    (lambda: zi.neighbours(LENET, V, X[0], X, k=-2), r"^k=-2: must be an integer >= 1$"),
    (lambda: zi.neighbours(LENET, V, X[0], X, k=1.9), r"^k=1\.9: must be an integer >= 1$"),
    (lambda: zi.neighbours(LENET, V, X[0], X, embeddings=np.zeros((1, 84))),
     r"^embeddings: one row per image of images \(2\), got 1"),
    (lambda: zi.neighbours(LENET, V, X[0], X[:0]), r"^images must be one image \(H, W, C\) or a batch"),
    (lambda: zi.neighbours(LENET, V, X[0], np.zeros((2, 32, 32, 1), np.float32)),
     r"^images: a batch \(N, H, W, C\) of the query's size \(28, 28, 1\), got shape \(2, 32, 32, 1\)$"),
    (lambda: zi.embed(LENET, V, X, batch_size=0), r"^batch_size=0: must be an integer >= 1$"),
    (lambda: zi.nearest_neighbours(np.zeros(3), np.zeros((4, 5))), r"^database: rows of 3 values like the query's"),
    (lambda: zi.nearest_neighbours(np.zeros(3), np.zeros((0, 3))),
     r"^database: one or more rows \(N, D\) to search, got shape \(0, 3\)$"),
    (lambda: zi.neighbours(LENET, V, X[0], X, embeddings=np.zeros((2, 10))),
     r"^embeddings: rows of 84 values, the features at layer='pre_logits' \(zi\.embed\(model, variables, images, "
     r"layer='pre_logits'\)\), got shape \(2, 10\)$"),
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
    np.testing.assert_array_equal(zi.saliency(LENET, V, X, class_index=(np.int64(1), 2)),
                                  zi.saliency(LENET, V, X, class_index=np.array([1, 2])))
    img, scores = zi.class_model(LENET, V, 3, steps=2, learning_rate=1, l2=0, normalize=False, init=X[0])
    assert img.shape == (28, 28, 1) and scores.shape == (3,) and np.isfinite(scores).all()
    assert zi.occlusion(LENET, V, X[0], patch=14, stride=14, fill=-1).drops.shape == (2, 2)
    assert zi.neighbours(LENET, V, X[0], X, k=5)["feature"][0].shape == (2,)  # at most the images there are
    assert zoo.features(LENET, V, X, "c3")["c3"].shape == (2, 10, 10, 16)
    resnet = zoo.create("resnet18", small_input=True)  # train=True: BatchNorm's statistics may be written
    maps = zoo.features(resnet, random_variables(resnet, (8, 8, 3)), np.zeros((2, 8, 8, 3), np.float32),
                        ["layer1", "layer1_0/bn1"], train=True, rngs={"dropout": jax.random.key(0)})
    assert maps["layer1"].shape == (2, 8, 8, 64) and maps["layer1_0/bn1"].shape == (2, 8, 8, 64)
