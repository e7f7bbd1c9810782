"""Node times from onnxruntime's profiler, net of the profiler's own per-node cost."""

from __future__ import annotations

import pytest

from hwcost.calibration.profiling import PROBE_NODES, net_node_times_us, probe_graph, profiler_overhead_us, recorded_node_times_us
from hwcost.calibration.validation import layer_shares


def test_the_profiler_cost_is_taken_off_every_node_so_small_nodes_keep_only_their_own_share():
    recorded = {"/conv/Conv": [103.0, 104.0, 250.0], "/add/Add": [4.0, 5.0, 4.0], "/relu/Relu": [2.0, 3.0, 2.0]}
    net = net_node_times_us(recorded, overhead_us=3.0)
    assert net == {"/conv/Conv": pytest.approx(101.0), "/add/Add": pytest.approx(1.0), "/relu/Relu": 0.0}
    shares = layer_shares(net, {"conv", "add", "relu"})
    assert shares[("add",)] == pytest.approx(1.0 / 102.0)  # 4 / 110 of the recorded medians
    assert shares[("conv",)] == pytest.approx(101.0 / 102.0)


def test_the_probe_measures_a_non_negative_overhead_below_what_its_nodes_record():
    graph, feeds = probe_graph()
    recorded = recorded_node_times_us(graph, feeds)
    assert len(recorded) == PROBE_NODES
    overhead = profiler_overhead_us()
    assert 0.0 <= overhead <= max(max(durations) for durations in recorded.values())
