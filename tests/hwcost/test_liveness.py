"""The activations a runtime holds at once: onnxruntime's execution order over a description's dataflow."""

from __future__ import annotations

from hwcost import get_runtime
from hwcost.liveness import execution_order, layer_inputs, live_bytes
from spaces.description import LayerDescription, ModelDescription

# A separator-like graph: stem, two blocks, each block's skip output summed at the end with the
# last block's output (the extractor's mask path reads both).
STEM, BLOCK_A, SKIP_A, BLOCK_B, SKIP_B, SKIP_SUM, MASK = range(7)
SEPARATOR_INPUTS = [(), (STEM,), (BLOCK_A,), (BLOCK_A,), (BLOCK_B,), (SKIP_A, SKIP_B), (BLOCK_B, SKIP_SUM)]


def _layer(name: str, elements: int, reads: tuple[int, ...] = (), kind: str = "conv1d") -> LayerDescription:
    params = 100 if kind == "conv1d" else 0
    extra = 2 * 64 if kind == "batchnorm" else 0
    return LayerDescription(
        name, kind, params=params, extra_params=extra, macs_per_second=params * elements, input_elements_per_second=elements,
        output_elements_per_second=elements, input_layers=reads,
    )  # fmt: skip


def _lowered(*layers: LayerDescription):
    return get_runtime("onnxruntime-fp32").lower(ModelDescription("toy", layers))


def test_a_branch_read_only_at_the_end_runs_at_the_end():
    order = execution_order(SEPARATOR_INPUTS)
    assert sorted(order) == list(range(7))
    # the depth-first walk back from the mask reaches block B's skip before block A's
    assert order == [STEM, BLOCK_A, BLOCK_B, SKIP_B, SKIP_A, SKIP_SUM, MASK]


def test_every_layer_runs_after_the_layers_it_reads():
    inputs = [(), (0,), (0,), (1, 2), (3,), (0, 4)]
    step = {position: index for index, position in enumerate(execution_order(inputs))}
    assert all(step[source] < step[position] for position, sources in enumerate(inputs) for source in sources)


def test_a_deferred_branch_holds_its_input_until_it_runs():
    sizes = {STEM: 1000, BLOCK_A: 4000, SKIP_A: 100, BLOCK_B: 2000, SKIP_B: 100, SKIP_SUM: 100, MASK: 10}
    layers = [_layer(f"l{position}", sizes[position], SEPARATOR_INPUTS[position]) for position in range(7)]
    # when block A's skip finally runs, block A's output (its input), block B's output (read by the
    # mask) and both skips (read by the sum) are held; the stem was freed after block A. In the
    # traced order (skip A right after block A) at most 4000 + 2000 + 100 would be.
    assert live_bytes(_lowered(*layers)) == (4000 + 2000 + 100 + 100) * 4


def test_a_layer_fused_into_the_kernel_before_it_writes_no_tensor_of_its_own():
    fused = _lowered(_layer("conv", 5000), _layer("norm", 5000, (0,), kind="batchnorm"), _layer("out", 5000, (1,)))
    assert fused.layers[1].fused_into == "conv"  # onnxruntime folds the batch norm into the convolution
    assert live_bytes(fused) == 2 * 5000 * 4


def test_a_description_without_dataflow_is_taken_as_a_chain():
    layers = [_layer(f"l{position}", elements) for position, elements in enumerate((1000, 3000, 2000, 500))]
    lowering = _lowered(*layers)
    assert layer_inputs(lowering.layers) == [(), (0,), (1,), (2,)]
    assert live_bytes(lowering) == (3000 + 2000) * 4


def test_gaps_in_the_dataflow_are_filled_from_the_order():
    # a block whose skip output nothing reads (the exporter drops it), then a layer that reads a
    # concatenation of earlier outputs, which no layer wrote
    layers = [
        _layer("stem", 1000), _layer("hidden", 4000, (0,)), _layer("skip", 500, (1,)), _layer("residual", 1000, (1,)),
        _layer("after_concat", 2000),
    ]  # fmt: skip
    lowering = _lowered(*layers)
    assert layer_inputs(lowering.layers) == [(), (0,), (1,), (1, 2), (3,)]
    # the unread skip is not deferred to the end (it would hold the hidden output until then)
    assert execution_order(layer_inputs(lowering.layers)) == [0, 1, 2, 3, 4]
    assert live_bytes(lowering) == (4000 + 500 + 1000) * 4


def test_an_inference_touches_its_weights_and_every_tensor_a_kernel_writes():
    fused = _lowered(_layer("conv", 5000), _layer("norm", 5000, (0,), kind="batchnorm"), _layer("out", 3000, (1,)))
    # the folded batch norm writes nothing; each convolution writes its output at 32 bits
    assert fused.touched_bytes == fused.weight_bytes + (5000 + 3000) * 4
    assert fused.weight_bytes == 2 * 100 * 4
