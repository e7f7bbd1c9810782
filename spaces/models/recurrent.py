"""An LSTM whose gate matrices are layers of the search space.

`nn.LSTM` keeps all its weights in flat parameters (`weight_ih_l0`, `weight_hh_l0`, ...), while
everything that compresses a model works on one `<layer>.weight` per layer: the search space
lists layers, QAT parametrizes `module.weight`, the packed file and the ONNX exporter find
`<layer>.weight`, and the cost model prices a layer per weight matrix. `QuantizableLSTM` computes
exactly what `nn.LSTM` computes (the same `torch.lstm` kernel, fed the same tensors) but holds
each layer's input and recurrent matrices in `RecurrentMatrix` children named `l{k}.ih` and
`l{k}.hh`, so each is a quantizable layer like a linear layer: every quantizer kind, per output
row (a row is one unit of one gate), packed bit-exactly, fake-quantized in QAT.

The kernel reads the children's `.weight` on every call, so a fake-quantizer attached to a
matrix acts in the forward pass and receives its gradient. Checkpoints written from an
`nn.LSTM` (upstream names) load into it: `torch_lstm_keys_renamed` maps the names, and
`load_state_dict` applies it.

The cost of a traced input is given per matrix (`matrix_work`): the input matrices multiply all
frames at once (one GEMM per layer, as onnxruntime's LSTM does), the recurrent matrices one
vector per dependent time step.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

GATES = 4
"""Input, forget, cell and output gates, stacked in that order along the rows of each matrix."""

_TORCH_LSTM_KEY = re.compile(r"^(?P<prefix>(?:.*\.)?)(?P<field>weight|bias)_(?P<matrix>ih|hh)_l(?P<layer>\d+)$")
"""`nn.LSTM`'s parameter names: `weight_ih_l0`, `bias_hh_l2`, ... (unidirectional, no projection)."""


class RecurrentMatrix(nn.Linear):
    """The stacked gate matrix `[4 * hidden, inputs]` (and bias) of one LSTM layer's input or state.

    A linear layer to everything that compresses weights; its owner, `QuantizableLSTM`, reads
    its weight and bias and never calls it.
    """


class LstmLayer(nn.Module):
    """One LSTM layer's two matrices: `ih` multiplies the layer's input, `hh` its previous output."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.ih = RecurrentMatrix(input_size, GATES * hidden_size)
        self.hh = RecurrentMatrix(hidden_size, GATES * hidden_size)


@dataclass(frozen=True)
class MatrixWork:
    """What one gate matrix computes for a traced input.

    Attributes:
        name: The matrix's name inside the LSTM (`l0.ih`).
        kind: "lstm_input" (all frames in one product) or "lstm_recurrent" (one step per frame).
        macs: Multiply-accumulates.
        input_elements, output_elements: Activations read and written.
        sequential_steps: Dependent steps (0 when the frames are independent).
    """

    name: str
    kind: str
    macs: int
    input_elements: int
    output_elements: int
    sequential_steps: int


class QuantizableLSTM(nn.Module):
    """`nn.LSTM(input_size, hidden_size, num_layers, batch_first=...)` with quantizable matrices.

    Unidirectional, with biases and without projections (the GE2E encoder's LSTM); the call
    signature and outputs are `nn.LSTM`'s: `(output, (h_n, c_n))`.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, batch_first: bool = False) -> None:
        super().__init__()
        for key, value in (("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers)):
            if value < 1:
                raise ValueError(f"{key}={value}: must be >= 1")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.batch_first = batch_first
        for layer in range(num_layers):
            self.add_module(f"l{layer}", LstmLayer(input_size if layer == 0 else hidden_size, hidden_size))
        self.register_load_state_dict_pre_hook(_rename_torch_lstm_keys)

    def layers(self) -> list[LstmLayer]:
        return [self.get_submodule(f"l{layer}") for layer in range(self.num_layers)]

    def forward(
        self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        if x.dim() == 2:  # unbatched `[frames, features]`, as nn.LSTM accepts: a batch of one
            batch_axis = 0 if self.batch_first else 1
            unbatched_state = None if state is None else (state[0].unsqueeze(1), state[1].unsqueeze(1))
            output, (hidden, cell) = self(x.unsqueeze(batch_axis), unbatched_state)
            return output.squeeze(batch_axis), (hidden.squeeze(1), cell.squeeze(1))
        if state is None:
            batch = x.shape[0 if self.batch_first else 1]
            zeros = torch.zeros(self.num_layers, batch, self.hidden_size, dtype=x.dtype, device=x.device)
            state = (zeros, zeros)
        weights = [
            tensor
            for layer in self.layers()
            for tensor in (layer.ih.weight, layer.hh.weight, layer.ih.bias, layer.hh.bias)
        ]
        output, hidden, cell = torch.lstm(
            x, state, weights, True, self.num_layers, 0.0, self.training, False, self.batch_first
        )
        return output, (hidden, cell)

    def matrix_work(self, x: torch.Tensor) -> list[MatrixWork]:
        """Per matrix, in execution order: what it computes for input `x` (batched or not)."""
        frames = x.shape[-2] if self.batch_first or x.dim() == 2 else x.shape[0]
        batch = x.numel() // (frames * self.input_size)
        work = []
        for index, layer in enumerate(self.layers()):
            gates = GATES * self.hidden_size
            for name, matrix, kind, steps in (
                ("ih", layer.ih, "lstm_input", 0),
                ("hh", layer.hh, "lstm_recurrent", frames),
            ):
                vectors = batch * frames
                work.append(
                    MatrixWork(
                        name=f"l{index}.{name}",
                        kind=kind,
                        macs=vectors * matrix.weight.numel(),
                        input_elements=vectors * matrix.in_features,
                        output_elements=vectors * gates if name == "ih" else vectors * self.hidden_size,
                        sequential_steps=steps,
                    )
                )
        return work


def torch_lstm_keys_renamed(state: Mapping[str, Any]) -> dict[str, Any]:
    """`state` with `nn.LSTM` parameter names (`lstm.weight_ih_l0`) renamed as `QuantizableLSTM`'s (`lstm.l0.ih.weight`)."""
    renamed = {}
    for key, value in state.items():
        match = _TORCH_LSTM_KEY.match(key)
        if match:
            key = f"{match['prefix']}l{match['layer']}.{match['matrix']}.{match['field']}"
        renamed[key] = value
    return renamed


def _rename_torch_lstm_keys(module: nn.Module, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
    """`load_state_dict` pre-hook: accept `nn.LSTM` names for this module's tensors."""
    for key in [key for key in state_dict if key.startswith(prefix)]:
        local = key[len(prefix) :]
        renamed = next(iter(torch_lstm_keys_renamed({local: None})))
        if renamed != local:
            state_dict[prefix + renamed] = state_dict.pop(key)


__all__ = ["GATES", "LstmLayer", "MatrixWork", "QuantizableLSTM", "RecurrentMatrix", "torch_lstm_keys_renamed"]
