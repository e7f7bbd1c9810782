"""The training-time fast paths of the extractor's layers compute what the plain modules compute."""

import pytest
import torch
from torch import nn

from spaces.models.layers import DepthwiseConv1d, FramedEncoder, OverlapAddDecoder, PReLU


def _outputs_and_gradients(module: nn.Module, x: torch.Tensor, training: bool) -> list[torch.Tensor]:
    module.train(training)
    x = x.clone().requires_grad_(True)
    module.zero_grad()
    out = module(x)
    (out * torch.linspace(-1.0, 2.0, out.numel()).view_as(out)).sum().backward()
    return [out.detach(), x.grad, *(p.grad.clone() for p in module.parameters())]


@pytest.mark.parametrize(
    "module, shape",
    [
        (FramedEncoder(filters=16, window=8, stride=4), (3, 1, 103)),
        (OverlapAddDecoder(filters=16, window=8, stride=4), (3, 16, 25)),
        (DepthwiseConv1d(channels=6, kernel_size=3, dilation=4), (2, 6, 37)),
        (DepthwiseConv1d(channels=6, kernel_size=5, dilation=2), (2, 6, 37)),
        (PReLU(), (2, 6, 37)),
        (PReLU(num_parameters=6), (2, 6, 37)),
    ],
    ids=["encoder", "decoder", "depthwise-k3-d4", "depthwise-k5-d2", "prelu", "prelu-per-channel"],
)
def test_the_training_path_matches_the_plain_module_in_outputs_and_gradients(module, shape):
    torch.manual_seed(0)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.uniform_(-0.5, 0.5)  # PReLU slopes too, so that negative inputs matter
    x = torch.randn(*shape)
    fast = _outputs_and_gradients(module, x, training=True)
    plain = _outputs_and_gradients(module, x, training=False)
    assert fast[0].shape == plain[0].shape
    for got, expected in zip(fast, plain):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_the_fast_layers_stay_the_plain_module_types_the_quantizers_and_cost_model_know():
    assert isinstance(FramedEncoder(8, 4, 2), nn.Conv1d)
    assert isinstance(OverlapAddDecoder(8, 4, 2), nn.ConvTranspose1d)
    assert isinstance(DepthwiseConv1d(4, 3, 2), nn.Conv1d)
    assert isinstance(PReLU(), nn.PReLU)
