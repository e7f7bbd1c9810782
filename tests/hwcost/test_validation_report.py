"""The validation summary's arithmetic and the attribution of profiled graph nodes to layers."""

from __future__ import annotations

import math

import pytest

from hwcost.calibration.validation import VALIDATION_SET, ModelValidation, ValidationReport, _layers_of


def _model(
    name: str, predicted_ms: float, measured_ms: float, peak: tuple[int, int] = (100, 100), predicted_by_op=None, measured_by_op=None
) -> ModelValidation:
    return ModelValidation(
        name, "toy", "fp32", predicted_ms, measured_ms, 0.01, peak[0], peak[1], predicted_by_op or {}, measured_by_op or {},
    )  # fmt: skip


def test_fractions_within_bounds_and_rank_correlation():
    report = ValidationReport(
        "t", "onnxruntime-fp32",
        (
            _model("a", 1.05, 1.0, (100, 100)), _model("b", 2.4, 2.0, (260, 200)), _model("c", 2.0, 3.0, (300, 300)),
            _model("d", 4.0, 4.0, (400, 400)),
        ),
        {},
    )  # fmt: skip
    assert report.within(0.10) == 0.5  # a (+5%) and d (0%)
    assert report.within(0.25) == 0.75  # b (+20%) too, not c (-33%)
    assert report.within(0.25, memory=True) == 0.75  # b's peak is +30%
    assert report.spearman(memory=True) == pytest.approx(1.0)
    assert report.spearman() == pytest.approx(0.8)  # b and c swap ranks
    data = report.to_dict()
    assert {"within_10pct", "within_25pct", "spearman", "models"} <= set(data)
    assert [model["error"] for model in data["models"]] == pytest.approx([0.05, 0.2, -1 / 3, 0.0])


def test_worst_kinds_rank_ops_by_how_far_measured_is_from_predicted():
    models = (
        _model("a", 3.0, 3.0, predicted_by_op={"conv1d": 2.0, "activation.prelu": 0.5, "batchnorm": 0.5},
               measured_by_op={"conv1d": 2.1, "activation.prelu": 2.0, "batchnorm": 0.4, "unattributed": 1.0}),
    )  # fmt: skip
    kinds = ValidationReport("t", "r", models, {}).worst_kinds()
    assert [kind.op for kind in kinds] == ["activation.prelu", "batchnorm", "conv1d"]  # time no layer names is not a kind
    assert kinds[0].ratio == pytest.approx(4.0)
    assert math.isinf(ValidationReport("t", "r", (_model("b", 1, 1, measured_by_op={"x": 1.0}),), {}).worst_kinds()[0].ratio)


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        ("/layer2/layer2.0/shortcut/shortcut.1/BatchNormalization_output_0_nchwc", ("layer2.0.shortcut.1",)),
        ("/stem/stem.2/Relu_output_0_nchwc", ("stem.2",)),
        ("/block1/res2/convs.0/conv/Conv", ("block1.res2.convs.0.conv",)),
        ("/encoder_1/Conv_token_69", ("encoder",)),
        ("tdnn.norm.bias_DequantizeLinear/duplicated", ("tdnn.norm",)),
        ("fused /linear/Gemm", ("linear",)),
        ("/lstm/LSTM_1", ("lstm.l0.hh", "lstm.l0.ih")),
        ("/Transpose", ()),
    ],
)
def test_graph_nodes_are_attributed_to_the_layers_they_run(node, expected):
    layers = {
        "layer2.0.shortcut.1", "stem.2", "block1.res2.convs.0.conv", "encoder", "tdnn.norm", "linear", "lstm.l0.ih", "lstm.l0.hh",
    }  # fmt: skip
    assert _layers_of(node, layers) == expected


def test_the_validation_set_covers_every_family_at_several_sizes():
    families = {}
    for case in VALIDATION_SET:
        families.setdefault(case.spec.family, []).append(case)
    assert len(VALIDATION_SET) >= 30
    assert set(families) == {"resnet", "ecapa_tdnn", "xvector", "extractor", "ge2e"}
    assert all(len(cases) >= 5 for cases in families.values())
    assert {case.weight_only for case in VALIDATION_SET} >= {("uniform", 8), ("kmeans", 4)}
