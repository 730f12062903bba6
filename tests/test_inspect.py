import pytest
import torch
from torch import nn

from cnnlab.check import check
from cnnlab.config import load_recipe
from cnnlab.errors import ConfigError, ModelError, SpecError
from cnnlab.inspection import check_model, receptive_field, summary, trace
from cnnlab.inspection.graph import ModelGraph, Node
from cnnlab.inspection.receptive_field import receptive_field_of
from cnnlab.models import build_model
from tests.conftest import separable_dataset, small_recipe, train_run
from tests.seed_tables import SEED_TABLES, SEED_TOTALS, parse


@pytest.mark.parametrize("name", sorted(SEED_TABLES))
def test_summary_reproduces_the_seed_tables(name):
    table = summary(build_model(name), (1, 28, 28))
    rows = [(r.name.rsplit("-", 1)[0], r.shape, r.params) for r in table.rows]
    assert rows == parse(SEED_TABLES[name])
    assert [r.name.rsplit("-", 1)[1] for r in table.rows] == [
        str(i) for i in range(1, len(rows) + 1)]
    assert table.total_params == table.trainable_params == SEED_TOTALS[name]


@pytest.mark.parametrize(("name", "sizes"), [("mnist_s5", ("0.00", "0.79", "0.07", "0.87")),
                                             ("mnist_26k", ("0.00", "1.62", "0.10", "1.72"))])
def test_summary_sizes_match_the_seeds(name, sizes):
    text = summary(build_model(name), (1, 28, 28)).to_text()
    for label, value in zip(("Input size", "Forward/backward pass size", "Params size",
                             "Estimated Total Size"), sizes, strict=True):
        assert f"{label} (MB): {value}" in text
    assert "Conv2d-1" in text and "[-1, " in text and "Non-trainable params: 0" in text


class TwoBranch(nn.Module):
    """S9-like: a dilated branch and a plain branch from the input, concatenated."""

    def __init__(self):
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(1, 4, 3, dilation=2, padding=2), nn.ReLU(),
                               nn.Conv2d(4, 4, 3, dilation=2, padding=2))
        self.b = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
                               nn.Conv2d(4, 4, 3, stride=1, padding=1))
        self.mix = nn.Conv2d(8, 4, 3, padding=1)

    def forward(self, x):
        return self.mix(torch.cat([self.a(x), self.b(x)], dim=1))


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.body = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(4, 4, 5, padding=2))
        self.head = nn.Conv2d(4, 4, 3, stride=2, padding=1)

    def forward(self, x):
        x = self.stem(x)
        return self.head(x + self.body(x))


RF_MODELS = {
    "plain": lambda: nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Conv2d(3, 3, 3),
                                   nn.Conv2d(3, 3, 5)),
    "dilated": lambda: nn.Sequential(nn.Conv2d(1, 3, 3, dilation=2), nn.Conv2d(3, 3, 3, dilation=3),
                                     nn.Conv2d(3, 3, 3, dilation=1)),
    "strided": lambda: nn.Sequential(nn.Conv2d(1, 3, 3, stride=2), nn.AvgPool2d(2, 2),
                                     nn.Conv2d(3, 3, 3), nn.Conv2d(3, 3, 3, stride=2),
                                     nn.Conv2d(3, 3, 3)),
    "two_branch_concat": TwoBranch,
    "residual": Residual,
}


def _empirical_rf(model: nn.Module, size: int = 96) -> int:
    """Back-propagate from the centre unit of the output map and measure how far the input
    pixels with a non-zero gradient extend. Positive weights and inputs make every path count."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                module.weight.fill_(1.0 / module.weight[0].numel())
                module.bias.zero_()
    x = torch.ones(1, 1, size, size, requires_grad=True)
    out = model(x)
    h, w = out.shape[-2:]
    out[0, 0, h // 2, w // 2].backward()
    rows = (x.grad[0, 0].abs() > 0).any(1).nonzero()
    return int(rows.max() - rows.min() + 1)


@pytest.mark.parametrize("name", sorted(RF_MODELS))
def test_receptive_field_equals_the_empirical_one(name):
    model = RF_MODELS[name]()
    computed = receptive_field(model, (1, 96, 96))
    assert computed.final == _empirical_rf(model)
    assert computed.exact and not computed.warnings


def test_rf_expected_values_for_branches_and_residuals():
    # computed by hand: branch A 1+4+4=9 (dilated), B 1+2+2=5; merged 9, then +2 -> 11
    assert receptive_field(TwoBranch(), (1, 32, 32)).final == 11
    # stem 3; body 3+2+4=9 beside identity 3 -> 9; head +2 -> 11
    assert receptive_field(Residual(), (1, 32, 32)).final == 11


def test_rf_table_columns_follow_the_seed():
    field = receptive_field(build_model("mnist_s5"), (1, 28, 28))
    first = field.rows[0]
    assert (first.nin, first.in_channels, first.out_channels, first.padding, first.kernel,
            first.stride, first.dilation, first.nout, first.jin, first.jout, first.rin,
            first.rout) == (28, 1, 16, 1, 3, 1, 1, 28, 1, 1, 1, 3)
    strided = next(r for r in field.rows if r.stride == 2 and r.kernel == 3)
    assert (strided.nin, strided.nout, strided.jin, strided.jout) == (13, 7, 2, 4)
    assert field.final == 46 and field.covers_input
    assert '"rout": 46' in field.to_json()
    assert field.to_markdown().startswith("| Layer | nin | In Channels")


def test_mismatched_jumps_at_a_merge_are_reported_not_averaged():
    # Hand-built graph: two branches reach the same map size with jumps 2 and 4, then add.
    fine, coarse = nn.Conv2d(1, 1, 3, stride=2), nn.Conv2d(1, 1, 5, stride=4)
    graph = ModelGraph((1, 16, 16), [
        Node("x", "input", [], (1, 16, 16)),
        Node("fine", "Conv2d", ["x"], (1, 4, 4), fine, "fine"),
        Node("coarse", "Conv2d", ["x"], (1, 4, 4), coarse, "coarse"),
        Node("add", "add", ["fine", "coarse"], (1, 4, 4)),
    ], exact=True)
    field = receptive_field_of(graph)
    assert field.final == 5  # max(3, 5)
    assert len(field.warnings) == 1 and "[2, 4]" in field.warnings[0]
    assert "[2, 4]" in field.to_text()


def test_functional_merges_appear_in_the_summary():
    rows = summary(TwoBranch(), (1, 16, 16)).rows
    cat = next(r for r in rows if r.name.startswith("cat-"))
    assert cat.shape == (8, 16, 16)
    rows = summary(Residual(), (1, 16, 16)).rows
    assert any(r.name.startswith("add-") and r.shape == (4, 16, 16) for r in rows)


def test_summary_optional_columns():
    table = summary(build_model("mnist_s4"), (1, 28, 28), columns=("kernel", "rf", "mult_adds"))
    first = table.rows[0]
    assert first.extra == {"kernel": "3", "rf": "3", "mult_adds": f"{28 * 28 * 16 * 9:,}"}
    assert table.rows[-1].extra["rf"] == "34"


def test_untraceable_model_falls_back_to_hooks_and_says_so():
    class DataDependent(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)

        def forward(self, x):
            if x.sum() > 0:  # fx cannot trace a branch on tensor values
                return self.conv(x)
            return self.conv(-x)

    graph = trace(DataDependent(), (1, 8, 8))
    assert not graph.exact and "approximate" in graph.note
    table = summary(DataDependent(), (1, 8, 8))
    assert table.rows[0].shape == (2, 6, 6)
    assert "approximate" in table.to_text()


def _recipe(**spec):
    overrides = [f"spec.{k}={v}" for k, v in spec.items()]
    return small_recipe('model.name="mnist_pool"', *overrides, epochs=3)  # has a MaxPool


def test_check_passes_the_default_recipe_and_names_each_rule():
    report = check(load_recipe("mnist-s5-10ep"))
    assert report.passed
    lines = report.to_text().splitlines()
    assert lines[0] == "✓ parameters <= 20,000: 16,754"
    assert any(line.startswith("✓ uses global average pooling") for line in lines)
    assert lines[-1].startswith("- test accuracy >= 99.4%")


def test_check_fails_too_many_params_and_a_forbidden_maxpool():
    report = check(_recipe(max_params=10000, forbid='["maxpool"]'))
    assert not report.passed
    assert [v.rule for v in report.failures] == ["parameters <= 10,000", "no MaxPool"]
    assert "features.2" in report.failures[1].measured


def test_the_accuracy_rule_waits_for_the_runs_last_planned_epoch():
    from cnnlab.inspection.spec import check_history

    recipe = _recipe(min_test_acc=99.0, last_epochs=1)  # 3 epochs, the last one decides
    rows = [{"test_acc": acc} for acc in (98.0, 98.5, 99.2)]
    (going,) = check_history(recipe, rows[:2])
    assert going.ok is None
    assert going.measured.startswith("98.50% at epoch 2; 2 of the run's 3 epochs")
    (done,) = check_history(recipe, rows)
    assert done.ok is True and done.measured == "99.20%"
    (short,) = check_history(recipe, rows[:1] + [{"test_acc": 98.9}], planned_epochs=2)
    assert short.ok is False  # a run planned shorter than the recipe is judged at its own end


def test_layer_rules_are_read_from_the_graph():
    model = nn.Sequential(
        nn.Conv2d(3, 3, 3, padding=2, dilation=2, groups=3), nn.BatchNorm2d(3), nn.ReLU(),
        nn.Conv2d(3, 8, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))
    recipe = _recipe(require='["dilated_conv", "depthwise_separable", "gap", "fc", "batchnorm"]',
                     forbid='["maxpool", "dropout"]', min_rf=5)
    report = check_model(recipe, model, (3, 32, 32))
    assert report.passed, report.to_text()
    plain = nn.Sequential(nn.Conv2d(3, 3, 3, groups=3), nn.Conv2d(3, 8, 3), nn.MaxPool2d(28))
    report = check_model(recipe, plain, (3, 32, 32))
    failed = {v.rule for v in report.failures}
    assert {"uses a dilated convolution", "uses a depthwise-separable convolution",
            "uses global average pooling", "no MaxPool", "receptive field >= 5"} - failed == {
        "receptive field >= 5"}  # its RF is 34: that rule holds


def test_gap_as_a_mean_over_height_and_width():
    class MeanHead(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3)

        def forward(self, x):
            return self.conv(x).mean(dim=(2, 3))

    report = check_model(_recipe(require='["gap"]'), MeanHead(), (1, 28, 28))
    assert report.passed, report.to_text()


def test_a_model_that_cannot_take_the_input_is_a_model_error():
    with pytest.raises(ModelError, match=r"input of shape \(1, 4, 4\)"):
        summary(build_model("mnist_s5"), (1, 4, 4))


def test_a_mean_over_channels_is_not_gap():
    class ChannelMean(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3)
            self.head = nn.Linear(26 * 26, 10)

        def forward(self, x):
            return self.head(self.conv(x).mean(dim=1).flatten(1))

    report = check_model(_recipe(require='["gap"]'), ChannelMean(), (1, 28, 28))
    assert not report.passed
    assert receptive_field(ChannelMean(), (1, 28, 28)).final == 3 + 25  # flatten sees all


def test_unknown_rule_name_is_a_config_error():
    with pytest.raises(ConfigError, match="'gapp'"):
        check(_recipe(require='["gapp"]'))


def test_train_refuses_a_model_that_breaks_the_spec(tmp_path):
    recipe = _recipe(max_params=100, forbid='["maxpool"]')
    with pytest.raises(SpecError) as info:
        train_run(recipe, dataset=separable_dataset(), out_dir=tmp_path / "runs")
    lines = str(info.value).splitlines()
    assert len(lines) == 3 and "parameters <= 100" in lines[1] and "no MaxPool" in lines[2]
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_run_writes_summary_rf_and_verdict(tmp_path):
    result = train_run(_recipe(), dataset=separable_dataset(), out_dir=tmp_path)
    assert (result.run_dir / "summary.txt").read_text().count("Conv2d-") == 6
    assert "| features.0.0 | 28 | 1 | 8 |" in (result.run_dir / "rf.md").read_text()
    verdict = (result.run_dir / "check.md").read_text()
    assert "in each of the last 3 epochs" in verdict
    assert result.check.verdicts[-1].ok == (
        min(r["test_acc"] for r in result.history) >= 99.4)


class _Residual(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(4, 4, 3, padding=1, bias=False)

    def forward(self, x):
        return x + self.conv(x)


def test_multiply_adds_and_peak_activations_match_a_count_by_hand():
    from torch import nn

    from cnnlab.inspection.cost import peak_activation_bytes, total_mult_adds

    chain = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(4, 2))
    graph = trace(chain, (1, 8, 8))
    assert total_mult_adds(graph) == 4 * 8 * 8 * 9 + 2 * 4  # conv: 9 per output value
    # conv output and ReLU output alive together: 2 x 4x8x8 fp32 values
    assert peak_activation_bytes(graph) == 2 * 256 * 4
    # a residual keeps its input alive until the add: input, conv output and sum at once
    assert peak_activation_bytes(trace(_Residual(), (4, 8, 8))) == 3 * 256 * 4
    table = summary(chain, (1, 8, 8), columns=("mult_adds_share",))
    assert [row.extra["mult_adds_share"] for row in table.rows if row.extra["mult_adds_share"]] \
        == [f"{100 * 2304 / 2312:.1f}%", f"{100 * 8 / 2312:.1f}%"]
    assert "Mult-adds per image: 2,312" in table.to_text()


def test_device_budgets_are_decided_before_training():
    recipe = load_recipe("mnist-s5-10ep", ["spec.max_mult_adds=900000",
                                        "spec.max_activation_bytes=40000"])
    report = check(recipe)
    lines = report.to_text().splitlines()
    madds = [line for line in lines if "multiply-adds" in line][0]
    peak = [line for line in lines if "activation bytes" in line][0]
    assert madds.startswith("✗") and "965,984" in madds  # mnist_strided at width 16
    assert peak.startswith("✗") and "43,264" in peak and not report.passed


def test_int8_flash_and_ram_bytes_match_a_count_by_hand():
    from cnnlab.inspection.cost import int8_flash_bytes, int8_ram_bytes, peak_activation_bytes

    # conv -> BN (folded into the conv) -> ReLU -> conv -> ReLU -> BN (kept: after ReLU)
    chain = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.Conv2d(4, 6, 3, padding=1, bias=False), nn.ReLU(),
                          nn.BatchNorm2d(6), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(6, 2))
    graph = trace(chain, (1, 8, 8))
    weights = 4 * 9 + 6 * 4 * 9 + 6 * 2  # one byte each
    per_channel = (4 + 6 + 2) * 8 + 6 * 8  # bias and scale; the unfolded BN's scale and shift
    assert int8_flash_bytes(graph) == weights + per_channel
    # TFLite Micro's arena: the first conv's BN folds and its ReLU fuses (one 4x8x8 tensor);
    # the kept BN is a multiply then an add, so at the multiply the second conv's 6x8x8 output
    # and the product are alive at once, the most the arena ever holds
    assert int8_ram_bytes(graph) == 2 * 6 * 8 * 8
    assert peak_activation_bytes(graph) == 4 * (4 * 64 * 3)  # fp32, every call its own tensor
    # buffers start at 16-byte boundaries: two 75-byte maps alive together take 80 + 75
    odd = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Conv2d(3, 3, 3, padding=1),
                        nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2))
    assert int8_ram_bytes(trace(odd, (1, 5, 5))) == 80 + 75
    # a stride-2 conv padded 1 on an even map pads as "same" would not (0 and 1): the
    # converter pads first, so its 2x10x10 input lives beside the 2x8x8 map it pads
    strided = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(),
                            nn.Conv2d(2, 4, 3, stride=2, padding=1), nn.ReLU(),
                            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    assert int8_ram_bytes(trace(strided, (1, 8, 8))) == 208 + 128  # the pad at 0, then the map
    # on a 7x7 map "same" pads 1 and 1 too: no pad, the 2x7x7 map and the 4x4x4 output
    assert int8_ram_bytes(trace(strided, (1, 7, 7))) == 112 + 64
    table = summary(chain, (1, 8, 8))
    assert f"int8: flash {weights + per_channel:,} bytes" in table.to_text()


def test_int8_budgets_are_decided_before_training_and_the_int8_accuracy_after_export():
    recipe = load_recipe("mnist-s5-10ep", ["spec.max_flash_bytes=10000",
                                        "spec.max_ram_bytes=20000", "spec.min_int8_acc=99.0"])
    lines = check(recipe).to_text().splitlines()
    flash = [line for line in lines if "int8 flash" in line][0]
    ram = [line for line in lines if "int8 RAM" in line][0]
    assert flash.startswith("✗") and ram.startswith("✓") and "10,816" in ram  # 43,264 / 4
    from cnnlab.inspection.spec import check_int8

    (undecided,) = check_int8(recipe, None)
    assert undecided.ok is None and "--int8" in undecided.line()
    (decided,) = check_int8(recipe, {"test_acc_int8": 98.9})
    assert decided.ok is False and "98.90%" in decided.line()
