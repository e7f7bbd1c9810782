import numpy as np
import pytest
import torch

from spaces.compress import ModelSpec, compress, load_packed_model, quantizable_layers
from spaces.quant import PackedFileError, UniformQuantizer, pack_weights, read_packed, unpack_weights, write_packed
from spaces.quant.packing import pack_codes, unpack_codes


@pytest.mark.parametrize("bits", range(1, 9))
@pytest.mark.parametrize("count", [1, 7, 13, 64, 1001])
def test_codes_round_trip_at_exact_bit_width(bits, count):
    codes = np.random.default_rng(bits * count).integers(0, 2**bits, size=count, dtype=np.uint8)
    packed = pack_codes(codes, bits)
    assert len(packed) == (count * bits + 7) // 8
    assert np.array_equal(unpack_codes(packed, count, bits), codes)


def test_code_too_large_for_bits_is_rejected():
    with pytest.raises(ValueError, match="does not fit in 2 bits"):
        pack_codes(np.array([4], dtype=np.uint8), 2)


@pytest.mark.parametrize("bits", [2, 3, 5, 8])
def test_weights_round_trip_bit_exact(tmp_path, bits):
    weight = torch.randn(5, 3, 7)
    quantized = UniformQuantizer().quantize(weight, bits)
    entries = {"conv.weight": quantized, "conv.bias": torch.randn(5)}
    size = write_packed(tmp_path / "weights.bin", entries)
    assert size == (tmp_path / "weights.bin").stat().st_size
    restored = read_packed(tmp_path / "weights.bin")
    assert torch.equal(restored["conv.weight"].codes, quantized.codes)
    assert torch.equal(UniformQuantizer().dequantize(restored["conv.weight"]), UniformQuantizer().dequantize(quantized))
    assert torch.equal(restored["conv.bias"], entries["conv.bias"])


@pytest.mark.parametrize("damage", [lambda b: b[:-3], lambda b: b"XXXX" + b[4:], lambda b: b + b"\0"])
def test_corrupt_file_is_a_clear_error(tmp_path, damage):
    data = pack_weights({"w": torch.ones(3)})
    path = tmp_path / "weights.bin"
    path.write_bytes(damage(data))
    with pytest.raises(PackedFileError, match="weights.bin"):
        read_packed(path)


SPEC = ModelSpec("resnet", dict(num_mel_bins=24, base_width=4, blocks=(1, 1, 1, 1), embedding_dim=16), 24, 100, 16000)


def test_size_bytes_equals_written_file_length(tmp_path):
    model = SPEC.build()
    layers = quantizable_layers(model)
    bits = {name: [2, 3, 4, 5, 8, 32][i % 6] for i, name in enumerate(layers)}
    compressed = compress(SPEC, model.state_dict(), bits)
    path = tmp_path / "weights.bin"
    path.write_bytes(compressed.packed)
    assert compressed.description.size_bytes == path.stat().st_size
    fp32 = compress(SPEC, model.state_dict(), {})
    assert compressed.description.size_bytes < fp32.description.size_bytes


def test_packed_model_reproduces_fake_quantized_model():
    model = SPEC.build()
    compressed = compress(SPEC, model.state_dict(), {name: 3 for name in quantizable_layers(model)})
    restored = load_packed_model(SPEC, compressed.packed)
    features = torch.randn(2, 60, 24)
    with torch.no_grad():
        assert torch.equal(restored(features), compressed.model(features))
    assert set(unpack_weights(compressed.packed)) == {
        key for key in model.state_dict() if not key.endswith("num_batches_tracked")
    }
