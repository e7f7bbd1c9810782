"""The activations a runtime holds at once: the live set of a description's dataflow in its execution order.

onnxruntime runs a graph's nodes in the order of a depth-first walk back from the graph's outputs
(`GraphViewer`: `Graph::ReverseDFSFrom` over the leaf nodes, each node's inputs pushed in node
index order, so the input written last is walked first, and a node runs once everything it reads
has run). A branch whose result is read only at the end therefore runs at the end: the
extractor's skip convolutions, summed into the mask, all run after the last separator block, so
every block's hidden output (their input) is held until then. The order of the traced model
(PyTorch's) would hold one of them at a time.

`live_bytes` walks a lowered description (`LayerDescription.input_layers` is its dataflow, the
positions of the layers whose outputs a layer reads, its gaps filled by `layer_inputs`) in that
order: each layer's output is allocated when the layer runs and freed after the last layer
reading it has run; the model's output is held to the end. A layer fused into the kernel before
it writes no tensor of its own: its readers keep its source's alive.
"""

from __future__ import annotations

from collections.abc import Sequence

from hwcost.runtimes import LoweredLayer, Lowering


def layer_inputs(layers: Sequence[LoweredLayer]) -> list[tuple[int, ...]]:
    """Per layer, the positions of the layers it reads, the dataflow's gaps filled from the order.

    Code outside the described layers (a concatenation, padding) leaves gaps: a layer after the
    first that records no input read something computed from earlier outputs, taken as the layer
    before it; an output that no layer reads, other than the model's, went to such code or to
    nothing (the exporter drops dead code), taken as read by the layer after it. So every layer
    leads to the model's output, and a description without dataflow is a chain.
    """
    inputs = [lowered.layer.input_layers or ((position - 1,) if position else ()) for position, lowered in enumerate(layers)]
    read = {source for sources in inputs for source in sources}
    for position in range(len(layers) - 1):
        if position not in read:
            inputs[position + 1] = (*inputs[position + 1], position)
    return inputs


def execution_order(inputs: Sequence[tuple[int, ...]]) -> list[int]:
    """Positions in onnxruntime's execution order: post-order of a depth-first walk back from the
    layers nobody reads (the last one first), each layer's inputs walked last-written first."""
    read = {source for sources in inputs for source in sources}
    stack = [(position, False) for position in range(len(inputs)) if position not in read]
    visited = [False] * len(inputs)
    order = []
    while stack:
        position, leaving = stack.pop()
        if leaving:
            order.append(position)
            continue
        if visited[position]:
            continue
        visited[position] = True
        stack.append((position, True))
        stack.extend((source, False) for source in sorted(set(inputs[position])) if not visited[source])
    return order


def live_bytes(lowering: Lowering) -> float:
    """The most bytes of layer outputs held at once in onnxruntime's execution order."""
    layers = lowering.layers
    inputs = layer_inputs(layers)
    buffer = list(range(len(layers)))  # whose tensor a layer's output is: its own, or its kernel's when fused
    for position, lowered in enumerate(layers):
        if lowered.fused_into and position:
            buffer[position] = buffer[position - 1]  # a runtime fuses a layer into the kernel of the layers just before it
    order = execution_order(inputs)
    step = {position: index for index, position in enumerate(order)}
    readers: dict[int, list[int]] = {position: [] for position in range(len(layers))}  # per tensor
    for position, sources in enumerate(inputs):
        for source in sources:
            readers[buffer[source]].append(position)
    freed_after = {owner: max((step[reader] for reader in readers[owner]), default=len(order)) for owner in set(buffer)}
    held: dict[int, float] = {}
    peak = 0.0
    for index, position in enumerate(order):
        if buffer[position] == position:
            held[position] = layers[position].output_bytes
        peak = max(peak, sum(held.values()))
        for owner in [owner for owner in held if freed_after[owner] <= index]:
            del held[owner]
    return peak


__all__ = ["execution_order", "layer_inputs", "live_bytes"]
