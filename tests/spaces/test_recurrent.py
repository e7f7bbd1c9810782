"""QuantizableLSTM: nn.LSTM's numbers with per-matrix quantizable layers (PTQ, packing, QAT, pickling, checkpoints).

The references here are independent of the module under test: a plain `nn.LSTM` given the same
(or the same dequantized) weights, and an upstream-style GE2E encoder built on `nn.LSTM`.
"""

import pickle

import pytest
import torch
import torch.nn.functional as F
from ray import cloudpickle
from torch import nn
from torch.nn.utils import parametrize

from spaces.checkpoints import CheckpointError, load_checkpoint
from spaces.compress import ModelSpec, compress, finalize_compressed, quantizable_layers, rebuild_compressed
from spaces.models import build_model
from spaces.models.recurrent import QuantizableLSTM, RecurrentMatrix, torch_lstm_keys_renamed
from spaces.plan import LayerQuantization
from spaces.quant import QUANTIZERS, QuantizedWeight, get_quantizer, unpack_weights
from spaces.quant.qat import (
    after_step,
    attach_fake_quantizers,
    export_quantized,
    fake_quantized_layers,
    without_fake_quantizers,
)

pytestmark = pytest.mark.usefixtures("single_thread")

BINS, HIDDEN, EMBEDDING, LAYERS = 40, 16, 16, 2
SPEC = ModelSpec(
    "ge2e", dict(num_mel_bins=BINS, hidden_size=HIDDEN, embedding_dim=EMBEDDING, num_layers=LAYERS), BINS, 100, 16000
)
MATRICES = [f"lstm.l{layer}.{matrix}" for layer in range(LAYERS) for matrix in ("ih", "hh")]
LSTM_WEIGHTS = 4 * HIDDEN * (BINS + HIDDEN) + 4 * HIDDEN * (HIDDEN + HIDDEN)
"""Gate-matrix weights of the small GE2E LSTM: layer 0 reads 40 bands, layer 1 the 16 units below."""


def _windows(batch: int, frames: int, seed: int) -> torch.Tensor:
    """Random non-negative mel-like windows `[batch, frames, BINS]`."""
    return torch.rand(batch, frames, BINS, generator=torch.Generator().manual_seed(seed))


def _teacher_state(seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return build_model("ge2e", num_mel_bins=BINS, hidden_size=HIDDEN, embedding_dim=EMBEDDING, num_layers=LAYERS).state_dict()


def _torch_lstm_state(model: nn.Module, prefix: str = "lstm.") -> dict[str, torch.Tensor]:
    """`model`'s LSTM tensors under `nn.LSTM`'s names (written out here, not via the module's renaming)."""
    state = model.state_dict()
    return {
        f"{prefix}{field}_{matrix}_l{layer}": state[f"{prefix}l{layer}.{matrix}.{field}"]
        for layer in range(LAYERS)
        for matrix in ("ih", "hh")
        for field in ("weight", "bias")
    }


# -- 1. The same numbers as nn.LSTM ----------------------------------------------------------------


@pytest.mark.parametrize("batch_first", [False, True], ids=["time-major", "batch-first"])
@pytest.mark.parametrize("num_layers", [1, 3])
def test_outputs_and_final_state_equal_nn_lstm_given_its_weights(batch_first, num_layers):
    torch.manual_seed(num_layers)
    reference = nn.LSTM(7, 5, num_layers, batch_first=batch_first)
    lstm = QuantizableLSTM(7, 5, num_layers, batch_first=batch_first)
    lstm.load_state_dict(reference.state_dict())  # strict, nn.LSTM's names
    x = torch.randn((3, 11, 7) if batch_first else (11, 3, 7))
    state = (torch.randn(num_layers, 3, 5), torch.randn(num_layers, 3, 5))
    for arguments in ((x,), (x, state)):
        expected, (expected_h, expected_c) = reference(*arguments)
        output, (h, c) = lstm(*arguments)
        assert output.shape == expected.shape == ((3, 11, 5) if batch_first else (11, 3, 5))
        assert torch.equal(output, expected)
        assert torch.equal(h, expected_h) and torch.equal(c, expected_c)
    # The given initial state is used: it changes the result.
    assert not torch.equal(lstm(x)[0], lstm(x, state)[0])


def test_gradients_equal_nn_lstm_gradients():
    torch.manual_seed(0)
    reference = nn.LSTM(6, 4, 2, batch_first=True)
    lstm = QuantizableLSTM(6, 4, 2, batch_first=True)
    lstm.load_state_dict(reference.state_dict())
    x = torch.randn(2, 9, 6)
    upstream = torch.randn(2, 9, 4)
    (reference(x)[0] * upstream).sum().backward()
    (lstm(x)[0] * upstream).sum().backward()
    for layer in range(2):
        for matrix in ("ih", "hh"):
            for field in ("weight", "bias"):
                expected = getattr(reference, f"{field}_{matrix}_l{layer}").grad
                got = getattr(lstm.get_submodule(f"l{layer}.{matrix}"), field).grad
                assert got is not None and torch.allclose(got, expected, rtol=1e-5, atol=1e-6), (layer, matrix, field)


def test_each_matrix_is_a_linear_layer_with_nn_lstm_shapes():
    lstm = QuantizableLSTM(7, 5, 2)
    reference = nn.LSTM(7, 5, 2)
    for layer in range(2):
        for matrix in ("ih", "hh"):
            module = lstm.get_submodule(f"l{layer}.{matrix}")
            assert isinstance(module, RecurrentMatrix) and isinstance(module, nn.Linear)
            assert module.weight.shape == getattr(reference, f"weight_{matrix}_l{layer}").shape
            assert module.bias.shape == getattr(reference, f"bias_{matrix}_l{layer}").shape


def test_torch_lstm_names_are_renamed_and_others_kept():
    state = {"lstm.weight_ih_l0": 1, "lstm.bias_hh_l12": 2, "weight_hh_l3": 3, "linear.weight": 4, "lstm.weight_ih_l0_reverse": 5}
    assert torch_lstm_keys_renamed(state) == {
        "lstm.l0.ih.weight": 1, "lstm.l12.hh.bias": 2, "l3.hh.weight": 3, "linear.weight": 4,
        "lstm.weight_ih_l0_reverse": 5,  # a second direction is not this module's: left for strict loading to refuse
    }


@pytest.mark.parametrize("batch_first", [False, True], ids=["time-major", "batch-first"])
def test_unbatched_input_equals_nn_lstm(batch_first):
    torch.manual_seed(0)
    reference = nn.LSTM(7, 5, 2, batch_first=batch_first)
    lstm = QuantizableLSTM(7, 5, 2, batch_first=batch_first)
    lstm.load_state_dict(reference.state_dict())
    x = torch.randn(11, 7)
    expected, (expected_h, expected_c) = reference(x)
    output, (h, c) = lstm(x)
    assert torch.equal(output, expected) and torch.equal(h, expected_h) and torch.equal(c, expected_c)


def test_ge2e_groups_are_exactly_its_quantizable_layers():
    model = SPEC.build()
    groups = model.layer_groups()
    assert list(groups) == ["lstm.l0", "lstm.l1", "linear"]
    assert sorted(name for names in groups.values() for name in names) == sorted(quantizable_layers(model))
    assert sorted(quantizable_layers(model)) == sorted([*MATRICES, "linear"])


# -- 2. Quantized LSTM == nn.LSTM holding the dequantized weights ----------------------------------

PTQ_CASES = [
    (name, bits)
    for name, quantizer in QUANTIZERS.items()
    for bits in sorted({min(quantizer.allowed_bits), 4} & set(quantizer.allowed_bits))
]


def _reference_lstm(state: dict[str, torch.Tensor], weights: dict[str, torch.Tensor]) -> nn.LSTM:
    """A plain nn.LSTM with `weights` (by matrix name) as its gate matrices and `state`'s biases."""
    reference = nn.LSTM(BINS, HIDDEN, LAYERS, batch_first=True)
    with torch.no_grad():
        for layer in range(LAYERS):
            for matrix in ("ih", "hh"):
                getattr(reference, f"weight_{matrix}_l{layer}").copy_(weights[f"lstm.l{layer}.{matrix}"])
                getattr(reference, f"bias_{matrix}_l{layer}").copy_(state[f"lstm.l{layer}.{matrix}.bias"])
    return reference.eval()


@pytest.mark.parametrize("name, bits", PTQ_CASES)
def test_quantized_lstm_is_bit_identical_to_nn_lstm_with_the_dequantized_weights(name, bits):
    state = _teacher_state()
    compressed = compress(SPEC, state, {matrix: bits for matrix in MATRICES}, name)
    quantizer = get_quantizer(name)
    dequantized = {
        matrix: quantizer.dequantize(quantizer.quantize(state[f"{matrix}.weight"].clone(), bits)) for matrix in MATRICES
    }
    for matrix, weight in dequantized.items():
        assert not torch.equal(weight, state[f"{matrix}.weight"])  # quantization did change it
        # Each output row (one gate unit) holds at most 2**bits levels.
        assert max(row.unique().numel() for row in weight) <= 2**bits
        assert torch.equal(compressed.model.get_submodule(matrix).weight, weight)
        assert torch.equal(compressed.model.get_submodule(matrix).bias, state[f"{matrix}.bias"])
    reference = _reference_lstm(state, dequantized)
    x = _windows(3, 25, seed=bits)
    with torch.no_grad():
        expected, (expected_h, expected_c) = reference(x)
        output, (h, c) = compressed.model.lstm(x)
        embedding = compressed.model(x)
    assert torch.equal(output, expected)
    assert torch.equal(h, expected_h) and torch.equal(c, expected_c)
    assert torch.equal(embedding, F.normalize(torch.relu(compressed.model.linear(expected[:, -1])), dim=1))
    described = {layer.name: layer for layer in compressed.description.layers}
    for matrix in MATRICES:
        assert (described[matrix].weight_bits, described[matrix].quantizer) == (bits, name)
    assert described["linear"].weight_bits == 32


# -- 3. Packing round trip -------------------------------------------------------------------------

MIXED = {"lstm.l0.ih": 4, "lstm.l0.hh": 3, "lstm.l1.ih": 2, "lstm.l1.hh": 1}
MIXED_QUANTIZERS = {"lstm.l0.ih": "uniform", "lstm.l0.hh": "kmeans", "lstm.l1.ih": "pow2", "lstm.l1.hh": "binary"}


def test_packed_lstm_rebuilds_the_same_weights_and_bytes():
    compressed = compress(SPEC, _teacher_state(), MIXED, MIXED_QUANTIZERS)
    entries = unpack_weights(compressed.packed)
    for matrix, bits in MIXED.items():
        entry = entries[f"{matrix}.weight"]
        assert isinstance(entry, QuantizedWeight)
        assert (entry.bits, entry.quantizer) == (bits, MIXED_QUANTIZERS[matrix])
        assert not isinstance(entries[f"{matrix}.bias"], QuantizedWeight)
    rebuilt = rebuild_compressed(SPEC, compressed.packed)
    assert rebuilt.packed == compressed.packed
    original_state, rebuilt_state = compressed.model.state_dict(), rebuilt.model.state_dict()
    assert original_state.keys() == rebuilt_state.keys()
    assert all(torch.equal(rebuilt_state[key], original_state[key]) for key in original_state)
    x = _windows(2, 30, seed=5)
    with torch.no_grad():
        assert torch.equal(rebuilt.model(x), compressed.model(x))
    assert rebuilt.description == compressed.description


def test_packed_size_shrinks_by_the_code_bits_saved():
    state = _teacher_state()
    sizes = {bits: len(compress(SPEC, state, {matrix: bits for matrix in MATRICES}).packed) for bits in (32, 8, 6, 4, 2)}
    assert sizes[32] > sizes[8] > sizes[6] > sizes[4] > sizes[2]
    # Codes are packed at exactly `bits` bits each; the per-row scales do not change with the bits.
    assert LSTM_WEIGHTS == 5632
    for wide, narrow in ((8, 6), (6, 4), (4, 2)):
        assert sizes[wide] - sizes[narrow] == LSTM_WEIGHTS * (wide - narrow) // 8


# -- 4. QAT beats PTQ on the distillation loss -----------------------------------------------------


def _distillation_loss(student: nn.Module, teacher: nn.Module, windows: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        target = teacher(windows)
    return (1 - F.cosine_similarity(student(windows), target, dim=1)).mean()


def test_qat_lowers_the_distillation_loss_below_post_training_quantization():
    state = _teacher_state()
    teacher = SPEC.build()
    teacher.load_state_dict(state)
    teacher.eval()
    layers = {matrix: LayerQuantization(3, "uniform") for matrix in MATRICES}
    held_out = _windows(64, 30, seed=1000)

    ptq = compress(SPEC, state, {matrix: 3 for matrix in MATRICES}, "uniform")
    with torch.no_grad():
        ptq_loss = _distillation_loss(ptq.model, teacher, held_out).item()

    torch.manual_seed(0)
    student = SPEC.build()
    student.load_state_dict(state)
    attach_fake_quantizers(student, layers)
    assert sorted(fake_quantized_layers(student)) == sorted(MATRICES)
    latent = student.lstm.l0.hh.parametrizations.weight.original
    optimizer = torch.optim.Adam(student.parameters(), lr=1e-3)
    steps = 40
    for step in range(1, steps + 1):
        loss = _distillation_loss(student, teacher, _windows(16, 30, seed=step))
        optimizer.zero_grad()
        loss.backward()
        if step == 1:
            assert latent.grad is not None and latent.grad.abs().sum() > 0
        optimizer.step()
        after_step(student, step, step / steps)
    student.eval()
    qat = finalize_compressed(SPEC, without_fake_quantizers(student), export_quantized(student))
    with torch.no_grad():
        qat_loss = _distillation_loss(qat.model, teacher, held_out).item()
        # The fake-quantizers acted in the forward pass: the student computed what the packed model computes.
        assert torch.allclose(student(held_out), qat.model(held_out), rtol=0, atol=1e-5)
    assert [layer.weight_bits for layer in qat.description.layers if layer.name in MATRICES] == [3] * 4
    assert len(qat.packed) == len(ptq.packed)  # the same format and bits: only the values differ
    assert qat_loss < ptq_loss, (qat_loss, ptq_loss)


# -- 5. Pickling a fake-quantized LSTM -------------------------------------------------------------

PICKLERS = {"pickle": (pickle.dumps, pickle.loads), "cloudpickle": (cloudpickle.dumps, cloudpickle.loads)}


def _fake_quantized_student(name: str, bits: int) -> nn.Module:
    model = SPEC.build()
    model.load_state_dict(_teacher_state())
    attach_fake_quantizers(model, {matrix: LayerQuantization(bits, name) for matrix in MATRICES})
    # Move the learned quantizer parameters (and k-means codes) off their initial values, as training does.
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in (1, 2):
        model(_windows(4, 20, seed=step)).square().sum().backward()
        optimizer.step()
        optimizer.zero_grad()
        after_step(model, step, 0.5)
    return model


def _learned(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter and buffer, by name (latent weights, steps, codebooks, codes)."""
    return {**dict(model.named_parameters()), **dict(model.named_buffers())}


@pytest.mark.parametrize("pickler", PICKLERS)
@pytest.mark.parametrize("name, bits", [("uniform", 3), ("kmeans", 3), ("pow2", 3)])
def test_a_fake_quantized_lstm_survives_pickling_and_keeps_training(pickler, name, bits):
    dumps, loads = PICKLERS[pickler]
    model = _fake_quantized_student(name, bits)
    before = {key: value.detach().clone() for key, value in _learned(model).items()}
    x = _windows(3, 20, seed=7)
    with torch.no_grad():
        expected = model(x)

    restored = loads(dumps(model))

    assert sorted(fake_quantized_layers(restored)) == sorted(MATRICES)
    assert isinstance(restored.lstm.l0.hh, RecurrentMatrix)
    learned, restored_learned = _learned(model), _learned(restored)
    assert restored_learned.keys() == learned.keys()
    assert any(".parametrizations.weight.0." in key for key in learned) == (name != "pow2")
    for key, value in learned.items():
        assert torch.equal(restored_learned[key], value), key
        assert restored_learned[key].data_ptr() != value.data_ptr(), key
    with torch.no_grad():
        assert torch.equal(restored(x), expected)
    # It exports exactly what the original exports.
    original_packed = finalize_compressed(SPEC, without_fake_quantizers(model), export_quantized(model)).packed
    assert finalize_compressed(SPEC, without_fake_quantizers(restored), export_quantized(restored)).packed == original_packed
    # A second trip works too.
    with torch.no_grad():
        assert torch.equal(loads(dumps(restored))(x), expected)

    # Training continues on the copy: gradients reach the latent weights and the quantizer's own parameters.
    optimizer = torch.optim.Adam(restored.parameters(), lr=1e-2)
    restored(x).square().sum().backward()
    latent = restored.lstm.l0.hh.parametrizations.weight.original
    assert latent.grad is not None and latent.grad.abs().sum() > 0
    for parameter in restored.lstm.l0.hh.parametrizations.weight[0].parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0
    optimizer.step()
    assert not torch.equal(latent, before["lstm.l0.hh.parametrizations.weight.original"])

    # The original is untouched: same tensors, still fake-quantized, same output, still trainable.
    assert sorted(fake_quantized_layers(model)) == sorted(MATRICES)
    assert all(parametrize.is_parametrized(model.get_submodule(matrix), "weight") for matrix in MATRICES)
    assert all(torch.equal(value, before[key]) for key, value in _learned(model).items())
    with torch.no_grad():
        assert torch.equal(model(x), expected)
    model(x).sum().backward()
    assert model.lstm.l0.hh.parametrizations.weight.original.grad is not None


# -- 6. Checkpoints with nn.LSTM names -------------------------------------------------------------


class _UpstreamEncoder(nn.Module):
    """resemblyzer's VoiceEncoder layout: nn.LSTM, linear, ReLU, L2 norm of the last hidden state,
    plus the GE2E loss terms its checkpoint carries."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(BINS, HIDDEN, LAYERS, batch_first=True)
        self.linear = nn.Linear(HIDDEN, EMBEDDING)
        self.relu = nn.ReLU()
        self.similarity_weight = nn.Parameter(torch.tensor([10.0]))
        self.similarity_bias = nn.Parameter(torch.tensor([-5.0]))

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        _, (hidden, _) = self.lstm(mels)
        raw = self.relu(self.linear(hidden[-1]))
        return raw / torch.norm(raw, dim=1, keepdim=True)


@pytest.fixture(scope="module")
def upstream() -> _UpstreamEncoder:
    torch.manual_seed(3)
    encoder = _UpstreamEncoder().eval()
    with torch.no_grad():
        encoder.linear.bias.add_(0.5)  # keep every ReLU output positive: no all-zero embedding
    return encoder


def _check_matches_upstream(model: nn.Module, upstream: _UpstreamEncoder) -> None:
    x = _windows(3, 30, seed=11)
    with torch.no_grad():
        expected_frames, _ = upstream.lstm(x)
        frames, _ = model.eval().lstm(x)
        assert torch.equal(frames, expected_frames)
        assert torch.allclose(model(x), upstream(x), rtol=0, atol=1e-6)


@pytest.mark.parametrize("format", ["resemblyzer", "auto"])
def test_a_resemblyzer_checkpoint_with_nn_lstm_names_loads_strictly(upstream, tmp_path, format):
    path = tmp_path / "pretrained.pt"
    torch.save({"model_state": upstream.state_dict(), "step": 7}, path)
    assert "lstm.weight_ih_l0" in upstream.state_dict()
    model = SPEC.build()
    state = load_checkpoint(path, format, model)
    assert state.keys() == model.state_dict().keys()
    model.load_state_dict(state)  # strict
    _check_matches_upstream(model, upstream)


def test_load_state_dict_accepts_nn_lstm_names_strictly(upstream):
    model = SPEC.build()
    upstream_state = {key: value for key, value in upstream.state_dict().items() if not key.startswith("similarity")}
    model.load_state_dict(upstream_state)  # strict
    _check_matches_upstream(model, upstream)
    assert upstream_state.keys() == {**_torch_lstm_state(model), "linear.weight": 0, "linear.bias": 0}.keys()


def test_a_checkpoint_missing_an_lstm_tensor_names_it_in_the_model_s_terms(upstream, tmp_path):
    state = {key: value for key, value in upstream.state_dict().items() if key != "lstm.weight_hh_l1"}
    path = tmp_path / "pretrained.pt"
    torch.save({"model_state": state}, path)
    with pytest.raises(CheckpointError, match=r"1 missing: lstm\.l1\.hh\.weight"):
        load_checkpoint(path, "resemblyzer", SPEC.build())
    with pytest.raises(RuntimeError, match=r"lstm\.l1\.hh\.weight"):
        SPEC.build().load_state_dict({key: value for key, value in state.items() if not key.startswith("similarity")})


def test_a_bidirectional_lstm_checkpoint_does_not_load(tmp_path):
    torch.manual_seed(0)
    bidirectional = nn.LSTM(BINS, HIDDEN, LAYERS, batch_first=True, bidirectional=True)
    state = {f"lstm.{key}": value for key, value in bidirectional.state_dict().items()}
    path = tmp_path / "pretrained.pt"
    linear = {key: value for key, value in SPEC.build().state_dict().items() if key.startswith("linear")}
    torch.save({"model_state": {**state, **linear}}, path)
    with pytest.raises(CheckpointError, match="unexpected: lstm.weight_ih_l0_reverse"):
        load_checkpoint(path, "resemblyzer", SPEC.build())
