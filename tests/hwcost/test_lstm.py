"""LSTM layers: an nn.LSTM is described as one "lstm" layer, a QuantizableLSTM as one "lstm_input"
and one "lstm_recurrent" layer per LSTM layer; priced per gate matrix and sequentially over time."""

from __future__ import annotations

import importlib.metadata
import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from hwcost import CostModel, CostModelError, available_targets, load_target
from hwcost.estimator import GEMV_EFFICIENCY, STEP_OVERHEAD_FRACTION
from spaces.describe import describe_model
from spaces.description import LayerDescription, ModelDescription, weight_kernel_class
from spaces.models.recurrent import QuantizableLSTM

pytestmark = pytest.mark.usefixtures("single_thread")  # tiny LSTMs: a second thread only contends

SAMPLE_RATE = 16000
HOP = 160  # 100 frames per second of audio
FRAMES = SAMPLE_RATE // HOP


class _Recurrent(nn.Module):
    """Framing conv (one second of audio -> 100 frames of 40 features), an LSTM, a linear head."""

    def __init__(self, lstm: nn.LSTM | QuantizableLSTM) -> None:
        super().__init__()
        self.frontend = nn.Conv1d(1, lstm.input_size, kernel_size=HOP, stride=HOP)
        self.lstm = lstm
        directions = 2 if getattr(lstm, "bidirectional", False) else 1  # QuantizableLSTM: one direction
        self.head = nn.Linear(directions * lstm.hidden_size, 8)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        frames = self.frontend(audio)  # (1, features, time)
        frames = frames.transpose(1, 2) if self.lstm.batch_first else frames.permute(2, 0, 1)
        output, _ = self.lstm(frames)
        return self.head(output)


def _describe(lstm: nn.LSTM | QuantizableLSTM, **kwargs: object) -> ModelDescription:
    model = _Recurrent(lstm)
    return describe_model(model, "toy", torch.randn(1, 1, SAMPLE_RATE), SAMPLE_RATE, **kwargs)


def test_single_layer_lstm_is_one_lstm_layer_with_hand_computed_costs():
    description = _describe(nn.LSTM(40, 64, batch_first=True))
    assert [layer.kind for layer in description.layers] == ["conv1d", "lstm", "linear"]
    layer = description.layer("lstm")
    # weight_ih 256 x 40 + weight_hh 256 x 64 = 4 * 64 * (40 + 64); biases b_ih + b_hh = 2 x 256.
    assert layer.params == 4 * 64 * (40 + 64) == 26_624
    assert layer.extra_params == 512
    assert layer.macs_per_second == 26_624 * FRAMES
    assert layer.input_elements_per_second == FRAMES * 40
    assert layer.output_elements_per_second == FRAMES * 64  # the output tensor, not (h, c)
    assert layer.sequential_steps_per_second == FRAMES
    # Frame-parallel layers have no sequential steps.
    assert description.layer("frontend").sequential_steps_per_second == 0.0


def test_bidirectional_stacked_lstm_sums_layers_and_directions():
    description = _describe(nn.LSTM(40, 32, num_layers=2, bidirectional=True))  # time-major input
    layer = description.layer("lstm")
    # Layer 0 per direction: 4 * 32 * (40 + 32) = 9216; layer 1 reads both directions (64 inputs):
    # 4 * 32 * (64 + 32) = 12288. Two directions each.
    per_frame = 2 * 4 * 32 * (40 + 32) + 2 * 4 * 32 * (64 + 32)
    assert layer.kind == "lstm"
    assert layer.params == per_frame == 43_008
    assert layer.extra_params == 2 * 2 * 2 * 4 * 32  # layers x directions x (b_ih, b_hh) x 4 * hidden
    assert layer.macs_per_second == per_frame * FRAMES
    assert layer.output_elements_per_second == FRAMES * 2 * 32
    # Directions run side by side; the second layer waits on the first: frames x num_layers.
    assert layer.sequential_steps_per_second == FRAMES * 2
    model = _Recurrent(nn.LSTM(40, 32, num_layers=2, bidirectional=True))
    assert description.params == sum(parameter.numel() for parameter in model.parameters())


def test_lstm_macs_match_an_unrolled_cell_computation():
    # torch's FlopCounterMode does not see inside the fused CPU LSTM kernel (it counts 0), so
    # count the matrix-vector products of an unrolled step by hand: 4 gates, each hidden x
    # (input + hidden), for each of the FRAMES steps.
    lstm = nn.LSTM(24, 16, batch_first=True)
    cell_macs = sum(gate.numel() for gate in (lstm.weight_ih_l0, lstm.weight_hh_l0))
    assert cell_macs == 4 * 16 * (24 + 16)
    assert _describe(lstm).layer("lstm").macs_per_second == cell_macs * FRAMES


def test_lstm_weights_take_the_requested_bits():
    layer = _describe(nn.LSTM(40, 64, batch_first=True), weight_bits={"lstm": 8}).layer("lstm")
    assert (layer.weight_bits, layer.quantizer, layer.kernel_class) == (8, "uniform", "int8")


def test_sequential_steps_survive_a_json_round_trip():
    description = _describe(nn.LSTM(40, 64, batch_first=True))
    again = ModelDescription.from_dict(json.loads(description.to_json()))
    assert again == description
    # Descriptions written before the field existed still load (it defaults to 0).
    old = description.to_dict()
    for layer in old["layers"]:
        del layer["sequential_steps_per_second"]
    assert ModelDescription.from_dict(old).layer("lstm").sequential_steps_per_second == 0.0


A72 = load_target("cortex-a72")


def _lstm(**fields: object) -> LayerDescription:
    base = {
        "name": "lstm",
        "kind": "lstm",
        "params": 26_624,
        "extra_params": 512,
        "macs_per_second": 26_624 * 100,
        "input_elements_per_second": 4_000,
        "output_elements_per_second": 6_400,
        "sequential_steps_per_second": 100,
    }
    return LayerDescription(**{**base, **fields})


def _large_lstm(**fields: object) -> LayerDescription:
    """LSTM(512, 512): 4 x 512 x 1024 gate weights, too large for Cortex-A72's 1 MiB L2."""
    return _lstm(params=2_097_152, extra_params=4_096, macs_per_second=2_097_152 * 100, **fields)


def _cost(layer: LayerDescription, target: object = A72):
    return CostModel().estimate(ModelDescription("toy", (layer,)), target).layers[0]


def test_modelled_factors_are_the_documented_ones():
    assert GEMV_EFFICIENCY == 0.5
    assert STEP_OVERHEAD_FRACTION == 0.1


def test_hand_computed_small_lstm_on_cortex_a72_is_cached_and_compute_bound():
    # Cortex-A72: 1.5 GHz, fp32 4 MACs/cycle x 0.7 efficiency x 0.5 GEMV = 1.4 MACs/cycle.
    # Weights (26,624 + 512) x 4 B = 108,544 B fit in the 1 MiB L2: one pass.
    # compute 2,662,400 / (1.4 x 1.5e9) s = 1.267810 ms.
    # traffic 108,544 + (4,000 + 6,400) x 4 = 150,144 B -> / 4.8 GB/s = 0.03128 ms.
    # overhead 5 us + 100 steps x 0.5 us = 55 us.
    cost = _cost(_lstm())
    assert cost.kernel_class == "fp32"
    assert cost.weight_bytes == 108_544
    assert cost.traffic_bytes == pytest.approx(150_144)
    assert cost.compute_ms == pytest.approx(2_662_400 / 1.4 / 1.5e9 * 1e3)
    assert cost.memory_ms == pytest.approx(150_144 / 4.8e9 * 1e3)
    assert cost.bound == "compute"
    assert cost.latency_ms == pytest.approx(cost.compute_ms + 0.055)


def test_hand_computed_large_lstm_on_cortex_a72_rereads_weights_every_step():
    # LSTM(512, 512): 4 x 512 x 1024 = 2,097,152 weights + 4,096 biases = 8,404,992 B > 1 MiB L2,
    # so all of it comes from DRAM on each of the 100 steps.
    # traffic 100 x 8,404,992 + (51,200 + 51,200) x 4 = 840,908,800 B -> / 4.8 GB/s = 175.1893 ms.
    # compute 209,715,200 / (1.4 x 1.5e9) = 99.8644 ms: memory-bound.
    layer = _large_lstm(input_elements_per_second=51_200, output_elements_per_second=51_200)
    cost = _cost(layer)
    assert cost.weight_bytes == 8_404_992
    assert cost.traffic_bytes == pytest.approx(840_908_800)
    assert cost.memory_ms == pytest.approx(840_908_800 / 4.8e9 * 1e3)
    assert cost.compute_ms == pytest.approx(209_715_200 / 1.4 / 1.5e9 * 1e3)
    assert cost.bound == "memory"
    assert cost.latency_ms == pytest.approx(cost.memory_ms + 0.055)


def test_packed_lstm_weights_beyond_cache_are_unpacked_every_step():
    # 4-bit: 2,097,152 weights = 1,048,576 B + 16,384 B of FP32 biases > 1 MiB: 100 passes.
    # compute: 209,715,200 / (8 x 0.6 x 0.5 x 1.5e9) + 100 x 2,097,152 x 0.25 / 1.5e9.
    layer = _large_lstm(weight_bits=4, quantizer="uniform")
    cost = _cost(layer)
    assert cost.kernel_class == "lowbit"
    expected = 209_715_200 / (8 * 0.6 * 0.5 * 1.5e9) + 100 * 2_097_152 * 0.25 / 1.5e9
    assert cost.compute_ms == pytest.approx(expected * 1e3)


def test_lstm_is_slower_than_the_same_work_as_a_batched_linear():
    lstm = _lstm()
    linear = LayerDescription(**{**lstm.__dict__, "kind": "linear", "sequential_steps_per_second": 0.0})
    assert _cost(lstm).latency_ms > _cost(linear).latency_ms


def test_lstm_without_recorded_steps_is_one_pass_without_step_overhead():
    cost = _cost(_lstm(sequential_steps_per_second=0.0))
    assert cost.latency_ms == pytest.approx(max(cost.compute_ms, cost.memory_ms) + 0.005)


WIDTHS = (32, 16, 8, 7, 6, 5, 4, 3, 2, 1)


@pytest.mark.parametrize("table_lookup", [False, True], ids=["integer", "lookup"])
@pytest.mark.parametrize("params", [26_624, 300_000, 2_097_152, 8_388_608])
@pytest.mark.parametrize("target", ["cortex-a72", "x86-avx2"])
def test_fewer_bits_never_raise_lstm_storage_or_traffic(table_lookup, params, target):
    previous = None
    for bits in WIDTHS:
        layer = _lstm(
            params=params,
            macs_per_second=params * 100.0,
            weight_bits=bits,
            kernel_class=weight_kernel_class(bits, table_lookup),
        )
        result = CostModel().estimate(ModelDescription("toy", (layer,)), target)
        current = (result.storage_bytes, result.layers[0].traffic_bytes, result.peak_memory_bytes)
        if previous is not None:
            assert all(now <= before for now, before in zip(current, previous)), (bits, current, previous)
        previous = current


@pytest.mark.parametrize("params", [26_624, 2_097_152])
@pytest.mark.parametrize(("bits", "family"), [(32, "fp32"), (8, "int8"), (4, "lowbit"), (4, "lookup")])
@pytest.mark.parametrize("target", ["cortex-a72", "x86-avx2"])
def test_more_steps_never_lower_lstm_latency(params, bits, family, target):
    latencies = [
        _cost(
            _lstm(
                params=params,
                macs_per_second=params * 100.0,
                weight_bits=bits,
                kernel_class=family,
                sequential_steps_per_second=steps,
            ),
            target,
        ).latency_ms
        for steps in (0, 1, 10, 100, 200, 1000)
    ]
    assert latencies == sorted(latencies)
    assert all(math.isfinite(latency) for latency in latencies)


def test_negative_steps_are_rejected():
    with pytest.raises(CostModelError, match="sequential_steps_per_second must be >= 0"):
        _cost(_lstm(sequential_steps_per_second=-1.0))


def test_described_lstm_prices_end_to_end_on_every_target():
    description = _describe(nn.LSTM(40, 64, num_layers=2, bidirectional=True, batch_first=True))
    for target in available_targets():
        costs = {cost.name: cost for cost in CostModel().estimate(description, target).layers}
        assert costs["lstm"].kind == "lstm"
        assert costs["lstm"].latency_ms > 0


# -- QuantizableLSTM: one "lstm_input" and one "lstm_recurrent" layer per LSTM layer ---------------

GATES = 4  # input, forget, cell and output gates: each matrix has 4 * hidden rows


def _matrix_figures(input_size: int, hidden: int, num_layers: int) -> dict[str, dict[str, float]]:
    """Hand-computed description of each gate matrix for FRAMES frames (batch 1).

    The input matrix multiplies all frames' inputs in one product and writes 4 * hidden gate
    pre-activations per frame; the recurrent matrix runs one step per frame, reading the previous
    output (hidden) and writing the layer's output (hidden) per frame.
    """
    figures = {}
    for layer in range(num_layers):
        inputs = input_size if layer == 0 else hidden
        figures[f"lstm.l{layer}.ih"] = dict(
            kind="lstm_input", params=GATES * hidden * inputs, extra_params=GATES * hidden,
            macs_per_second=GATES * hidden * inputs * FRAMES, input_elements_per_second=FRAMES * inputs,
            output_elements_per_second=FRAMES * GATES * hidden, sequential_steps_per_second=0,
        )
        figures[f"lstm.l{layer}.hh"] = dict(
            kind="lstm_recurrent", params=GATES * hidden * hidden, extra_params=GATES * hidden,
            macs_per_second=GATES * hidden * hidden * FRAMES, input_elements_per_second=FRAMES * hidden,
            output_elements_per_second=FRAMES * hidden, sequential_steps_per_second=FRAMES,
        )
    return figures


@pytest.mark.parametrize(
    ("input_size", "hidden", "num_layers", "batch_first"), [(40, 64, 2, True), (24, 16, 1, False), (40, 32, 3, False)]
)
def test_quantizable_lstm_is_described_per_matrix_with_hand_computed_figures(input_size, hidden, num_layers, batch_first):
    lstm = QuantizableLSTM(input_size, hidden, num_layers, batch_first=batch_first)
    description = _describe(lstm)
    expected = _matrix_figures(input_size, hidden, num_layers)
    assert [layer.name for layer in description.layers] == ["frontend", *expected, "head"]
    assert [layer.kind for layer in description.layers] == ["conv1d", *(f["kind"] for f in expected.values()), "linear"]
    for name, figures in expected.items():
        layer = description.layer(name)
        assert {field: getattr(layer, field) for field in figures} == figures, name
        assert (layer.weight_bits, layer.quantizer, layer.kernel_class) == (32, "none", "fp32")
    model = _Recurrent(QuantizableLSTM(input_size, hidden, num_layers, batch_first=batch_first))
    assert description.params == sum(parameter.numel() for parameter in model.parameters())


def test_quantizable_lstm_matrices_add_up_to_the_nn_lstm_description():
    whole = _describe(nn.LSTM(40, 64, num_layers=2, batch_first=True)).layer("lstm")
    described = _describe(QuantizableLSTM(40, 64, 2, batch_first=True))
    matrices = [layer for layer in described.layers if layer.name.startswith("lstm.")]
    assert len(matrices) == 4
    assert sum(layer.params for layer in matrices) == whole.params
    assert sum(layer.extra_params for layer in matrices) == whole.extra_params
    assert sum(layer.macs_per_second for layer in matrices) == whole.macs_per_second
    # The layers' recurrences run one after the other: frames x layers steps in all.
    assert sum(layer.sequential_steps_per_second for layer in matrices) == whole.sequential_steps_per_second
    assert matrices[-1].output_elements_per_second == whole.output_elements_per_second


def test_quantizable_lstm_matrices_take_their_own_bits_and_quantizer():
    bits = {"lstm.l0.ih": 8, "lstm.l0.hh": 3, "lstm.l1.hh": 1}
    families = {"lstm.l0.ih": "uniform", "lstm.l0.hh": "kmeans", "lstm.l1.hh": "binary"}
    description = _describe(QuantizableLSTM(40, 64, 2, batch_first=True), weight_bits=bits, quantizer=families)
    got = {
        name: (layer.weight_bits, layer.quantizer, layer.kernel_class)
        for name in ("lstm.l0.ih", "lstm.l0.hh", "lstm.l1.ih", "lstm.l1.hh")
        for layer in (description.layer(name),)
    }
    assert got == {
        "lstm.l0.ih": (8, "uniform", weight_kernel_class(8)),
        "lstm.l0.hh": (3, "kmeans", weight_kernel_class(3, table_lookup=True)),
        "lstm.l1.ih": (32, "none", "fp32"),
        "lstm.l1.hh": (1, "binary", weight_kernel_class(1)),
    }
    assert got["lstm.l0.hh"][2] == "lookup" and got["lstm.l0.ih"][2] == "int8"
    # Stored weight bits follow each matrix's own width.
    float_description = _describe(QuantizableLSTM(40, 64, 2, batch_first=True))
    assert description.layer("lstm.l0.hh").weight_storage_bits < float_description.layer("lstm.l0.hh").weight_storage_bits


def test_hand_computed_recurrent_and_input_matrix_costs_on_cortex_a72():
    description = _describe(QuantizableLSTM(40, 64, batch_first=True))
    costs = {cost.name: cost for cost in CostModel().estimate(description, A72).layers}
    # Recurrent matrix 256 x 64: (16,384 + 256) x 4 B = 66,560 B, cached: one pass.
    # traffic 66,560 + (6,400 + 6,400) x 4 = 117,760 B; compute 1,638,400 MACs at 1.4 MACs/cycle (GEMV).
    # overhead 5 us + 100 steps x 0.5 us = 55 us.
    recurrent = costs["lstm.l0.hh"]
    assert recurrent.weight_bytes == 66_560
    assert recurrent.traffic_bytes == pytest.approx(117_760)
    assert recurrent.compute_ms == pytest.approx(1_638_400 / 1.4 / 1.5e9 * 1e3)
    assert recurrent.memory_ms == pytest.approx(117_760 / 4.8e9 * 1e3)
    assert recurrent.latency_ms == pytest.approx(max(recurrent.compute_ms, recurrent.memory_ms) + 0.055)
    # Input matrix 256 x 40, all frames in one product: 2.8 MACs/cycle (no GEMV factor), no steps.
    # traffic (10,240 + 256) x 4 + (4,000 + 25,600) x 4 = 160,384 B; overhead 5 us.
    projection = costs["lstm.l0.ih"]
    assert projection.weight_bytes == 41_984
    assert projection.traffic_bytes == pytest.approx(160_384)
    assert projection.compute_ms == pytest.approx(1_024_000 / 2.8 / 1.5e9 * 1e3)
    assert projection.latency_ms == pytest.approx(max(projection.compute_ms, projection.memory_ms) + 0.005)


@pytest.mark.parametrize("bits", [32, 8, 4, 1])
@pytest.mark.parametrize("target", ["cortex-a53", "x86-avx2"])
def test_recurrent_matrix_is_priced_as_lstm_and_input_matrix_as_linear(bits, target):
    family = weight_kernel_class(bits)
    fields = dict(weight_bits=bits, kernel_class=family, quantizer="uniform" if bits < 32 else "none")
    for params in (16_384, 2_097_152):
        recurrent = _lstm(params=params, macs_per_second=params * 100.0, **fields)
        as_matrix = _cost(LayerDescription(**{**recurrent.__dict__, "kind": "lstm_recurrent"}), target)
        as_lstm = _cost(recurrent, target)
        assert (as_matrix.latency_ms, as_matrix.traffic_bytes, as_matrix.compute_ms) == (
            as_lstm.latency_ms, as_lstm.traffic_bytes, as_lstm.compute_ms
        )
        frames = LayerDescription(**{**recurrent.__dict__, "sequential_steps_per_second": 0.0})
        as_input = _cost(LayerDescription(**{**frames.__dict__, "kind": "lstm_input"}), target)
        as_linear = _cost(LayerDescription(**{**frames.__dict__, "kind": "linear"}), target)
        assert (as_input.latency_ms, as_input.traffic_bytes, as_input.compute_ms) == (
            as_linear.latency_ms, as_linear.traffic_bytes, as_linear.compute_ms
        )
        # The same matrix run frame by frame costs more than in one product.
        assert as_matrix.latency_ms > as_input.latency_ms


@pytest.mark.parametrize("kind", ["lstm_recurrent", "lstm_input"])
@pytest.mark.parametrize("table_lookup", [False, True], ids=["integer", "lookup"])
@pytest.mark.parametrize("params", [16_384, 2_097_152])
@pytest.mark.parametrize("target", ["cortex-a72", "x86-avx2"])
def test_fewer_bits_never_raise_a_gate_matrix_s_storage_traffic_or_same_kernel_latency(kind, table_lookup, params, target):
    steps = 100.0 if kind == "lstm_recurrent" else 0.0
    previous = None
    for bits in WIDTHS:
        layer = _lstm(
            kind=kind, params=params, macs_per_second=params * 100.0, sequential_steps_per_second=steps,
            weight_bits=bits, quantizer="none" if bits == 32 else "q", kernel_class=weight_kernel_class(bits, table_lookup),
        )
        result = CostModel().estimate(ModelDescription("toy", (layer,)), target)
        cost = result.layers[0]
        assert math.isfinite(cost.latency_ms) and cost.latency_ms > 0
        current = (
            bits, cost.kernel_class, result.storage_bytes, cost.weight_bytes, cost.traffic_bytes,
            result.peak_memory_bytes, cost.latency_ms,
        )
        if previous is not None:
            assert all(now <= before for now, before in zip(current[2:6], previous[2:6])), (current, previous)
            if cost.kernel_class == previous[1]:  # packed kernels pay unpacking: compare within one kernel
                assert cost.latency_ms <= previous[-1], (current, previous)
        previous = current


@pytest.mark.parametrize("quantizer", ["uniform", "kmeans"])
def test_described_quantized_lstm_prices_on_every_target_and_shrinks_with_bits(quantizer):
    lstm = QuantizableLSTM(40, 64, 2, batch_first=True)
    matrices = ["lstm.l0.ih", "lstm.l0.hh", "lstm.l1.ih", "lstm.l1.hh"]
    widths = [bits for bits in (32, 8, 6, 4, 3, 2, 1) if quantizer == "kmeans" or bits >= 2]
    previous: dict[str, tuple] = {}
    for bits in widths:
        description = _describe(lstm, weight_bits={name: bits for name in matrices}, quantizer=quantizer)
        for target in available_targets():
            result = CostModel().estimate(description, target)
            costs = {cost.name: cost for cost in result.layers}
            assert all(math.isfinite(cost.latency_ms) and cost.latency_ms > 0 for cost in result.layers)
            current = (result.storage_bytes, sum(costs[name].traffic_bytes for name in matrices), result.peak_memory_bytes)
            if target in previous:
                assert all(now <= before for now, before in zip(current, previous[target])), (bits, target)
            previous[target] = current
            assert {costs[name].kind for name in matrices} == {"lstm_input", "lstm_recurrent"}


# -- GE2E runs: the model reads overlapping windows, about 2.08 times each frame ------------------

GE2E_FRAMES_PER_SECOND = round(100 * 160 / 77)  # 100 frames/s, 160-frame windows every 77 frames
REPOSITORY = Path(__file__).resolve().parents[2]


def _small_ge2e_config(tmp_path: Path) -> Path:
    """A ge2e-front-end run config whose teacher is a small random GE2E checkpoint (resemblyzer format)."""
    torch.manual_seed(0)
    upstream = nn.Module()
    upstream.lstm = nn.LSTM(40, 16, 2, batch_first=True)
    upstream.linear = nn.Linear(16, 16)
    checkpoint = tmp_path / "pretrained.pt"
    torch.save({"model_state": upstream.state_dict()}, checkpoint)
    config = tmp_path / "ge2e.yaml"
    config.write_text(
        "name: ge2e_small\n"
        "features: {frontend: ge2e, num_mel_bins: 40}\n"
        "model: {family: ge2e, hidden_size: 16, embedding_dim: 16, num_layers: 2}\n"
        f"teacher: {{checkpoint: {checkpoint}, format: resemblyzer}}\n"
        "fidelity: {steps: [0]}\n"
    )
    return config


def _check_ge2e_spec(config_path: Path) -> None:
    from search.config import load_config
    from search.tasks.verification_setup import model_spec
    from spaces.compress import compress

    spec = model_spec(load_config(config_path))
    assert GE2E_FRAMES_PER_SECOND == 208
    assert spec.frames_per_second == GE2E_FRAMES_PER_SECOND
    assert spec.one_second_input().shape == (1, GE2E_FRAMES_PER_SECOND, 40)
    model = spec.build()
    description = compress(spec, model.state_dict(), {}).description
    hidden = model.lstm.hidden_size
    for layer in range(model.lstm.num_layers):
        recurrent, projection = description.layer(f"lstm.l{layer}.hh"), description.layer(f"lstm.l{layer}.ih")
        assert recurrent.sequential_steps_per_second == GE2E_FRAMES_PER_SECOND
        assert recurrent.macs_per_second == GATES * hidden * hidden * GE2E_FRAMES_PER_SECOND
        assert projection.sequential_steps_per_second == 0
        assert projection.macs_per_second == projection.params * GE2E_FRAMES_PER_SECOND


def test_a_ge2e_run_s_spec_counts_the_frames_its_overlapping_windows_read(tmp_path):
    _check_ge2e_spec(_small_ge2e_config(tmp_path))


def test_the_shipped_ge2e_config_counts_the_overlapping_windows():
    if not (REPOSITORY.parent / "shared" / "data" / "an4").is_dir():
        pytest.skip("../shared/data/an4 is not here")
    try:
        importlib.metadata.distribution("resemblyzer")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("the resemblyzer wheel (the config's teacher weights) is not installed")
    _check_ge2e_spec(REPOSITORY / "configs" / "sv_ge2e.yaml")
