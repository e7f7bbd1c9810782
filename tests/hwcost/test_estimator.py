"""The per-layer roofline: hand-computed cases, monotonicity, coverage of every layer kind."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hwcost import (
    KERNEL_CLASSES,
    CostModel,
    CostModelError,
    ProfileError,
    available_targets,
    estimate,
    kernel_class,
    load_target,
    profile_from_dict,
)
from spaces.description import LAYER_KINDS, LayerDescription, ModelDescription, weight_kernel_class

REPO_ROOT = Path(__file__).resolve().parents[2]

# Round figures so every expected number below can be checked by hand.
PROFILE = profile_from_dict(
    {
        "name": "hand-cpu",
        "clock_ghz": 2.0,
        "cores_used": 1,
        "simd_width_bits": 128,
        "macs_per_cycle": {"fp32": 4, "int8": 8, "lowbit": 8, "lookup": 4, "binary": 64},
        "efficiency": {"fp32": 0.5, "int8": 0.5, "lowbit": 0.5, "lookup": 0.5, "binary": 0.5},
        "l1_kb": 32,
        "l2_kb": 1024,
        "dram_bandwidth_gbps": 4.0,
        "per_layer_overhead_us": 10.0,
        "unpack_cycles_per_weight": 0.5,
    },
    source="hand-cpu",
)


def _layer(**fields: object) -> LayerDescription:
    base = {
        "name": "fc",
        "kind": "linear",
        "params": 100_000,
        "macs_per_second": 8e6,
        "input_elements_per_second": 10_000,
        "output_elements_per_second": 10_000,
    }
    return LayerDescription(**{**base, **fields})


def _model(*layers: LayerDescription, size_bytes: int = 0) -> ModelDescription:
    return ModelDescription(family="toy", layers=layers, size_bytes=size_bytes)


def _single(layer: LayerDescription):
    return CostModel().estimate(_model(layer), PROFILE).layers[0]


def test_package_imports_and_estimates_with_torch_blocked():
    code = (
        "import sys\n"
        "sys.modules['torch'] = None\n"
        "import hwcost\n"
        "from spaces.description import LayerDescription, ModelDescription\n"
        "layer = LayerDescription('fc', 'linear', params=10, macs_per_second=1e6)\n"
        "estimate = hwcost.estimate(ModelDescription('toy', (layer,)), 'cortex-a72')\n"
        "assert estimate.latency_ms > 0\n"
        "assert not [name for name in sys.modules if name.startswith('torch') and sys.modules[name]]\n"
    )
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=environment, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("fields", "family", "weight_bytes", "traffic_bytes", "compute_ms", "memory_ms"),
    [
        # fp32: 100k x 4 B = 400 kB weights (fit in L2, one pass); (10k + 10k) x 4 B activations.
        # compute 8e6 / (4 x 0.5 x 2e9) = 2 ms; memory 480 kB / 4 GB/s = 0.12 ms.
        ({}, "fp32", 400_000, 480_000, 2.0, 0.12),
        # int8: 100k B + 3200 bits of scales (400 B); 8-bit activations 20 kB.
        # compute 8e6 / (8 x 0.5 x 2e9) = 1 ms; memory 120.4 kB / 4 GB/s = 0.0301 ms.
        (
            {"weight_bits": 8, "activation_bits": 8, "quantizer": "uniform", "overhead_bits": 3200},
            "int8",
            100_400,
            120_400,
            1.0,
            0.0301,
        ),
        # lowbit (4-bit uniform): 50 kB weights, 20 kB activations.
        # compute 1 ms + unpack 100k x 0.5 cycles / 2e9 = 0.025 ms; memory 70 kB / 4 GB/s.
        (
            {"weight_bits": 4, "activation_bits": 8, "quantizer": "uniform"},
            "lowbit",
            50_000,
            70_000,
            1.025,
            0.0175,
        ),
        # lookup (4-bit k-means, 16 x 32-bit codebook = 64 B): 50,064 B weights, 80 kB activations.
        # compute 8e6 / (4 x 0.5 x 2e9) = 2 ms + 0.025 ms unpack; memory 130,064 B / 4 GB/s.
        (
            {"weight_bits": 4, "quantizer": "kmeans", "kernel_class": "lookup", "overhead_bits": 512},
            "lookup",
            50_064,
            130_064,
            2.025,
            0.032516,
        ),
        # binary: 100k bits = 12.5 kB + 100 FP32 extras (400 B); 80 kB activations.
        # compute 8e6 / (64 x 0.5 x 2e9) = 0.125 ms; memory 92.9 kB / 4 GB/s = 0.023225 ms.
        (
            {"weight_bits": 1, "quantizer": "binary", "extra_params": 100},
            "binary",
            12_900,
            92_900,
            0.125,
            0.023225,
        ),
    ],
)
def test_hand_computed_roofline_per_kernel_class(
    fields, family, weight_bytes, traffic_bytes, compute_ms, memory_ms
):
    cost = _single(_layer(**fields))
    assert cost.kernel_class == family
    assert cost.weight_bytes == weight_bytes
    assert cost.traffic_bytes == pytest.approx(traffic_bytes)
    assert cost.compute_ms == pytest.approx(compute_ms)
    assert cost.memory_ms == pytest.approx(memory_ms)
    assert cost.latency_ms == pytest.approx(compute_ms + 0.010)  # 10 us per-layer overhead
    assert cost.bound == "compute"


def test_hand_computed_kernel_classes_cover_every_class():
    families = {
        kernel_class(_layer(weight_bits=bits, kernel_class=family))
        for bits, family in [(32, "fp32"), (8, "int8"), (4, "lowbit"), (4, "lookup"), (1, "binary")]
    }
    assert families == set(KERNEL_CLASSES)


@pytest.mark.parametrize(
    ("bits", "expected"), [(32, "fp32"), (16, "fp32"), (8, "int8"), (7, "lowbit"), (2, "lowbit"), (1, "binary")]
)
def test_a_layer_recording_no_kernel_class_gets_the_bit_width_rule(bits, expected):
    assert kernel_class(_layer(weight_bits=bits, quantizer="kmeans")) == expected  # the name is not read


def test_a_mac_layer_runs_on_the_kernel_class_its_description_records():
    assert kernel_class(_layer(kind="conv1d", weight_bits=4, quantizer="uniform", kernel_class="lookup")) == "lookup"
    assert kernel_class(_layer(kind="batchnorm", params=0)) == "elementwise"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"weight_bits": 4, "kernel_class": "simd"}, "kernel_class='simd'; expected one of"),
        ({"weight_bits": 8, "kernel_class": "fp32"}, "kernel_class='fp32' with weight_bits=8"),
        ({"weight_bits": 32, "kernel_class": "lookup"}, "kernel_class='lookup' with weight_bits=32"),
    ],
)
def test_impossible_kernel_classes_are_rejected(fields, message):
    with pytest.raises(ValueError, match=message):
        _layer(**fields)


def test_memory_bound_layer_takes_the_memory_time():
    # 1 M input + 1 M output FP32 elements = 8 MB -> 2 ms at 4 GB/s; compute 1e6 / 4e9 = 0.25 ms.
    cost = _single(
        _layer(
            kind="depthwise_conv",
            params=1000,
            macs_per_second=1e6,
            input_elements_per_second=1e6,
            output_elements_per_second=1e6,
        )
    )
    assert cost.bound == "memory"
    assert cost.memory_ms == pytest.approx((8e6 + 4000) / 4e9 * 1e3)
    assert cost.latency_ms == pytest.approx(cost.memory_ms + 0.010)


def test_weights_larger_than_cache_are_reread_per_l1_output_tile():
    # 1 M FP32 weights = 4 MB > 1 MiB L2; 20k x 4 B = 80 kB of output / 32 KiB L1 -> 3 tiles.
    cost = _single(_layer(params=1_000_000, output_elements_per_second=20_000))
    assert cost.traffic_bytes == pytest.approx(3 * 4_000_000 + (10_000 + 20_000) * 4)


def test_packed_weights_are_unpacked_once_per_weight_pass():
    # 8 M 4-bit weights = 4 MB > L2 and 80 kB of output: 3 passes, so 3 x 8e6 x 0.5 cycles of unpacking.
    layer = _layer(params=8_000_000, output_elements_per_second=20_000, weight_bits=4, quantizer="uniform")
    cost = _single(layer)
    assert cost.compute_ms == pytest.approx(1.0 + 3 * 8e6 * 0.5 / 2e9 * 1e3)


def test_parameter_free_layer_costs_its_elements_at_simd_throughput():
    # batchnorm: 1 op per element; 1e6 elements / (4 lanes x 2e9) = 0.125 ms compute;
    # (8 MB activations + 128 FP32 affine terms) / 4 GB/s memory.
    cost = _single(
        LayerDescription(
            "bn", "batchnorm", extra_params=128, input_elements_per_second=1e6, output_elements_per_second=1e6
        )
    )
    assert cost.kernel_class == "elementwise"
    assert cost.compute_ms == pytest.approx(0.125)
    assert cost.memory_ms == pytest.approx((8e6 + 512) / 4e9 * 1e3)
    assert cost.bound == "memory"


def test_every_layer_kind_is_costed():
    layers = tuple(_layer(name=f"layer{index}", kind=kind) for index, kind in enumerate(LAYER_KINDS))
    result = CostModel().estimate(_model(*layers), PROFILE)
    assert [cost.kind for cost in result.layers] == list(LAYER_KINDS)
    for cost in result.layers:
        assert cost.latency_ms > 0
        assert cost.kernel_class in (*KERNEL_CLASSES, "elementwise")


def test_unknown_layer_kind_is_an_error_not_skipped():
    layer = _layer(name="attn")
    object.__setattr__(layer, "kind", "attention")
    with pytest.raises(CostModelError, match="'attn'.*'attention'"):
        CostModel().estimate(_model(layer), PROFILE)


def test_negative_counts_are_rejected_naming_layer_and_field():
    with pytest.raises(CostModelError, match="'fc': macs_per_second must be >= 0"):
        CostModel().estimate(_model(_layer(macs_per_second=-1.0)), PROFILE)


WIDTHS = (32, 16, 8, 7, 6, 5, 4, 3, 2, 1)


@pytest.mark.parametrize("table_lookup", [False, True], ids=["integer", "lookup"])
@pytest.mark.parametrize("params", [10_000, 300_000, 2_000_000])
@pytest.mark.parametrize("target", ["cortex-a72", "x86-avx2"])
def test_fewer_weight_bits_never_raise_storage_traffic_or_peak_memory(table_lookup, params, target):
    previous = None
    for bits in WIDTHS:
        layer = _layer(params=params, weight_bits=bits, kernel_class=weight_kernel_class(bits, table_lookup))
        result = CostModel().estimate(_model(layer), target)
        current = (result.storage_bytes, result.layers[0].traffic_bytes, result.peak_memory_bytes)
        if previous is not None:
            assert all(now <= before for now, before in zip(current, previous)), (bits, current, previous)
        previous = current


@pytest.mark.parametrize(
    ("bits", "family"), [(32, "fp32"), (8, "int8"), (4, "lowbit"), (4, "lookup"), (1, "binary")]
)
def test_more_macs_never_lower_compute_time(bits, family):
    times = [
        _single(_layer(weight_bits=bits, kernel_class=family, macs_per_second=macs)).compute_ms
        for macs in (0.0, 1e5, 1e6, 1e7, 1e8)
    ]
    assert times == sorted(times)


def test_shared_weights_are_stored_once_but_computed_twice():
    owner = _layer(name="block1")
    shared = _layer(name="block2", shared_with="block1")
    alone = CostModel().estimate(_model(owner), PROFILE)
    both = CostModel().estimate(_model(owner, shared), PROFILE)
    assert both.storage_bytes == alone.storage_bytes == 400_000
    assert both.latency_ms == pytest.approx(2 * alone.latency_ms)


def test_storage_prefers_the_packed_file_size():
    assert CostModel().estimate(_model(_layer(), size_bytes=123_456), PROFILE).storage_bytes == 123_456


def test_storage_rounds_stored_bits_up_to_bytes():
    layer = _layer(params=5, weight_bits=3, quantizer="uniform")  # 15 bits -> 2 bytes
    assert CostModel().estimate(_model(layer), PROFILE).storage_bytes == 2


def test_peak_memory_is_resident_weights_plus_largest_activation_set():
    small = _layer(name="a", params=1000, input_elements_per_second=100, output_elements_per_second=100)
    large = _layer(name="b", params=2000, input_elements_per_second=5000, output_elements_per_second=3000)
    result = CostModel().estimate(_model(small, large), PROFILE)
    assert result.peak_memory_bytes == (1000 + 2000) * 4 + (5000 + 3000) * 4


def test_estimate_totals_and_flat_metrics():
    result = CostModel().estimate(_model(_layer(name="a"), _layer(name="b", weight_bits=8)), PROFILE)
    assert result.target == "hand-cpu"
    assert result.latency_ms == pytest.approx(sum(cost.latency_ms for cost in result.layers))
    assert result.real_time_factor == pytest.approx(result.latency_ms / 1000)
    assert result.to_dict() == {
        "latency_ms": result.latency_ms,
        "real_time_factor": result.real_time_factor,
        "storage_bytes": result.storage_bytes,
        "peak_memory_bytes": result.peak_memory_bytes,
    }


def test_bundled_targets_price_by_name_with_their_own_figures():
    layer = _layer()
    for name in available_targets():
        profile = load_target(name)
        cost = estimate(_model(layer), name).layers[0]
        expected = 8e6 / (profile.sustained_macs_per_cycle("fp32") * profile.cycles_per_second) * 1e3
        assert cost.compute_ms == pytest.approx(expected)


def test_unknown_target_name_is_a_profile_error():
    with pytest.raises(ProfileError, match="available targets"):
        CostModel().estimate(_model(_layer()), "cortex-z99")


def test_layer_costs_are_frozen():
    cost = _single(_layer())
    with pytest.raises(dataclasses.FrozenInstanceError):
        cost.latency_ms = 0.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("quantizer", "bits", "expected"),
    [
        ("kmeans", 4, "lookup"),
        ("kmeans-group4", 1, "lookup"),
        ("pow2", 7, "lookup"),
        ("pow2", 8, "int8"),
        ("uniform", 4, "lowbit"),
        ("binary-adaptive", 1, "binary"),
        ("none", 32, "fp32"),
    ],
)
def test_descriptions_written_before_kernel_classes_were_recorded_load_with_the_old_rule(quantizer, bits, expected):
    layer = dataclasses.asdict(_layer(kind="conv1d", params=10, weight_bits=bits, quantizer=quantizer))
    del layer["kernel_class"]
    loaded = ModelDescription.from_dict({"family": "toy", "layers": [layer]})
    assert kernel_class(loaded.layers[0]) == expected
