"""zoo.summary: param_count over every container of a model's variables (dict, Flax FrozenDict, a params
tree), summary's print_fn, and the auxiliary classifier of Inception v3 below 299x299. References:
torch 2.13 / torchvision 0.28 (sum(p.numel()) and forward-hook MACs, /work/torch-ref, 2026-12-02)."""
import flax
import pytest

import zoo
from zoo.summary import abstract_variables, trace


@pytest.mark.parametrize("classes, shape, torch_numel", [(10, (32, 32, 3), 11_181_642), (1000, (224, 224, 3), 11_689_512)])
def test_param_count_is_torchs_numel_for_every_container(classes, shape, torch_numel):
    """torchvision resnet18: sum(p.numel() for p in m.parameters()), BN running statistics (buffers) excluded.
    A FrozenDict of the variables counted the 9,600 batch_stats values too (11,191,242 at 10 classes)."""
    v = abstract_variables(zoo.create("resnet18", num_classes=classes), shape)
    assert "batch_stats" in v
    frozen = flax.core.freeze(v)
    for tree in (v, frozen, v["params"], frozen["params"], flax.core.freeze(v["params"])):
        assert zoo.param_count(tree) == torch_numel


def test_param_count_refuses_collections_without_params():
    v = abstract_variables(zoo.create("resnet18", num_classes=10), (32, 32, 3))
    for tree in ({"batch_stats": v["batch_stats"]}, flax.core.freeze({"batch_stats": v["batch_stats"]})):
        with pytest.raises(ValueError, match=r"^variables: collections \['batch_stats'\] without 'params'; "):
            zoo.param_count(tree)  # was 9,600, the running statistics taken for parameters


def test_summary_print_fn(capsys):
    model = zoo.create("lenet5")
    rows = zoo.summary(model, (28, 28, 1), print_fn=None)  # None: the rows, nothing printed (was a TypeError)
    assert capsys.readouterr().out == "" and sum(r.params for r in rows) == 61_706
    lines = []
    assert zoo.summary(model, (28, 28, 1), print_fn=lines.append) == rows and "61,706" in lines[0]
    with pytest.raises(ValueError, match=r"^print_fn='no': a callable taking one string \(e\.g\. print\), or None"):
        zoo.summary(model, (28, 28, 1), print_fn="no")


def test_inception_v3_below_299_counts_no_aux_macs():
    """Below 299 torchvision's AuxLogits cannot run (train mode: 'Output size is too small'); eval mode skips it:
    torch hooks give 203,525,728 MACs at 75 (the zoo counted the 299-px aux pass on a placeholder: 209,208,928).
    The parameters stay (torch's numel with aux_logits=True: 27,161,264); the rows show no shape and no MACs."""
    rows, v = trace(zoo.create("inception_v3"), (75, 75, 3))
    assert sum(r.macs for r in rows) == 203_525_728 and zoo.param_count(v) == sum(r.params for r in rows) == 27_161_264
    aux = [r for r in rows if r.path.startswith("AuxLogits/")]
    assert len(aux) == 5 and all(r.macs == 0 and r.output_shape == () for r in aux)
    assert sum(r.params for r in aux) == 27_161_264 - 23_834_568  # torchvision: with minus without aux_logits
    assert all(r.macs > 0 for r in rows if r.kind in ("Conv", "Dense") and not r.path.startswith("AuxLogits/"))
