"""benchmarks/bench_report.py: how `bench.py --rounds`' rounds of ours-then-PyTorch become one row and one ratio."""
import pytest

from helpers import benchmarks_module


@pytest.fixture(scope="module")
def report():
    with benchmarks_module("bench_report") as module:
        yield module


def _ours(train, eval_, first):
    return {"model": "m", "train_img_s": train, "train_img_s_mean": train, "eval_img_s": eval_,
            "eval_img_s_mean": eval_, "first_train_s": first}


def test_rounds_give_the_median_of_each_rounds_ratio_and_keep_the_first_rounds_first_step(report):
    """The machine slows down in round 2 on both sides: each round's ratio is 0.9x / 1.2x, 0.5x / 1.0x,
    1.0x / 1.1x; the reported ratio is the median of those (0.9x, 1.1x), not ratio of medians."""
    rounds = [(_ours(45.0, 120.0, 11.0), {"train_img_s": 50.0, "eval_img_s": 100.0}),
              (_ours(20.0, 80.0, 14.0), {"train_img_s": 40.0, "eval_img_s": 80.0}),
              (_ours(60.0, 132.0, 12.0), {"train_img_s": 60.0, "eval_img_s": 120.0})]
    ours, torch = report.combine_rounds(rounds)
    assert ours["train_ratio"] == pytest.approx(0.9) and ours["eval_ratio"] == pytest.approx(1.1)
    assert ours["train_img_s"] == 45.0 and torch["train_img_s"] == 50.0 and torch["eval_img_s"] == 100.0
    assert ours["first_train_s"] == 11.0  # the first round's cold first step
    assert [x["train_ratio"] for x in ours["rounds"]] == pytest.approx([0.9, 0.5, 1.0])
    assert report.ratio(ours, torch, "train") == pytest.approx(0.9)
    assert report._spread(ours, "train") == " (0.50-1.00)"
    assert "rounds" not in rounds[0][0]  # the rounds' own rows are left as they were


def test_one_round_is_the_ratio_of_its_rows(report):
    rows = [(_ours(45.0, 120.0, 11.0), {"train_img_s": 50.0, "eval_img_s": 100.0})]
    ours, torch = report.combine_rounds(rows)
    assert "train_ratio" not in ours and report.ratio(ours, torch, "eval") == pytest.approx(1.2)
    assert report._spread(ours, "eval") == ""


def test_gflops_use_the_macs_that_run_and_torch_the_literal_ones(report):
    """VGG-11 at 32x32 folds its 25088 x 4096 layer to 512 x 4096: 171.7 M MACs run of the 272.3 M counted."""
    ours = {"model": "vgg11_bn", "macs": 272_343_040, "train_macs_executed": 171_679_744,
            "eval_macs_executed": 171_679_744, "train_img_s": 100.0, "eval_img_s": 100.0}
    torch = {"model": "vgg11_bn", "macs": 272_343_040, "train_img_s": 100.0, "eval_img_s": 100.0}
    report.derive([ours, torch], 200.0)
    assert ours["eval_gflops"] == pytest.approx(2 * 171_679_744 * 100 / 1e9)
    assert torch["eval_gflops"] == pytest.approx(2 * 272_343_040 * 100 / 1e9)
    assert ours["train_util"] == pytest.approx(6 * 171_679_744 * 100 / 1e9 / 200.0)
    assert report._macs(ours) == "272.3 (171.7 / 171.7 run)" and report._macs(torch) == "272.3"
