"""Target-speaker extraction in the WASE style (Hao et al. 2021), the model TinyWASE compresses.

A learned 1-D convolutional encoder turns the mixture into frames of `filters` channels. A
voiceprint branch encodes the enrollment utterance (through the same encoder) into one speaker
embedding. A Conv-TasNet separator (`stacks` repeats of `blocks` dilated depthwise-separable
convolution blocks with gLN, PReLU, residual and skip paths) is conditioned on the voiceprint by
multiplication at the start of every stack; after the first stack an onset/activity cue (a
per-frame probability that the target speaker is talking) gates the features. The summed skip
paths give a sigmoid mask on the encoder output (an untrained model passes the mixture through
at half gain instead of a random filtering of it, so training starts near 0 dB SI-SDRi and learns
faster than with a ReLU mask), and a transposed-convolution decoder returns a waveform
as long as the input, scaled to its least-squares fit of the mixture (`fit_to_mixture`).

Every stack has the same shapes, so `repeated_blocks` offers them to `spaces.sharing` to run one
set of weights (the parameter sharing TinyWASE uses). The voiceprint branch reuses the mixture's
encoder. `layer_groups` names stable groups (encoder, voiceprint, bottleneck, stack0..stackR-1,
cue, mask, decoder) for the search space.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from spaces.models.layers import (
    QUANTIZABLE_TYPES,
    Add,
    DepthwiseConv1d,
    FramedEncoder,
    Multiply,
    OverlapAddDecoder,
    PReLU,
)

_NORM_EPSILON = 1e-8


def fit_to_mixture(estimate: torch.Tensor, mixture: torch.Tensor) -> torch.Tensor:
    """The estimate `[B, T]` scaled to its least-squares fit of the mixture.

    The SI-SDR loss leaves the output's scale free (an untrained-for gain of -10 dB or more is
    common), which makes plain SDR meaningless. The target is the part of the mixture the
    estimate explains: when the estimate is close to the target and the target is uncorrelated
    with the interferer, `<mixture, estimate> / <estimate, estimate>` restores the target's
    level. A scale-invariant loss is unchanged by it, so training is too.
    """
    explained = (estimate * mixture).sum(dim=-1, keepdim=True)
    return explained / (estimate.square().sum(dim=-1, keepdim=True) + _NORM_EPSILON) * estimate


def _global_layer_norm(channels: int) -> nn.GroupNorm:
    """gLN of Conv-TasNet: normalise over channels and time together (one group)."""
    return nn.GroupNorm(1, channels, eps=_NORM_EPSILON)


class TemporalBlock(nn.Module):
    """1x1 conv, PReLU, gLN, dilated depthwise conv, PReLU, gLN, then 1x1 convs to the residual and skip paths.

    With `skip_channels=0` there is no skip path (the voiceprint branch's blocks).
    """

    def __init__(self, channels: int, hidden: int, kernel_size: int, dilation: int, skip_channels: int) -> None:
        super().__init__()
        self.conv_in = nn.Conv1d(channels, hidden, 1)
        self.act_in = PReLU()
        self.norm_in = _global_layer_norm(hidden)
        self.depthwise = DepthwiseConv1d(hidden, kernel_size, dilation)
        self.act_depthwise = PReLU()
        self.norm_depthwise = _global_layer_norm(hidden)
        self.residual = nn.Conv1d(hidden, channels, 1)
        self.add = Add()
        self.skip = nn.Conv1d(hidden, skip_channels, 1) if skip_channels else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        hidden = self.norm_in(self.act_in(self.conv_in(x)))
        hidden = self.norm_depthwise(self.act_depthwise(self.depthwise(hidden)))
        skip = self.skip(hidden) if self.skip is not None else None
        return self.add(x, self.residual(hidden)), skip


class SeparatorStack(nn.Module):
    """One repeat of the separator: voiceprint conditioning, then blocks with dilations 1, 2, 4, ..."""

    def __init__(
        self, channels: int, hidden: int, skip_channels: int, kernel_size: int, blocks: int, embedding_dim: int
    ) -> None:
        super().__init__()
        self.fusion = nn.Linear(embedding_dim, channels)
        nn.init.ones_(self.fusion.bias)  # a gain around 1 at first: random gains would scramble every stack's input
        self.condition = Multiply()
        self.blocks = nn.ModuleList(
            TemporalBlock(channels, hidden, kernel_size, 2**index, skip_channels) for index in range(blocks)
        )
        self.skip_adds = nn.ModuleList(Add() for _ in range(blocks - 1))

    def forward(self, x: torch.Tensor, voiceprint: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features and the sum of this stack's skip outputs."""
        x = self.condition(x, self.fusion(voiceprint).unsqueeze(-1))
        x, skips = self.blocks[0](x)
        for block, add in zip(self.blocks[1:], self.skip_adds):
            x, skip = block(x)
            skips = add(skips, skip)
        return x, skips


class VoiceprintEncoder(nn.Module):
    """Encoded enrollment `[B, filters, frames]` -> speaker embedding `[B, embedding_dim]`."""

    def __init__(
        self, filters: int, channels: int, hidden: int, kernel_size: int, blocks: int, embedding_dim: int
    ) -> None:
        super().__init__()
        self.norm = _global_layer_norm(filters)
        self.conv_in = nn.Conv1d(filters, channels, 1)
        self.blocks = nn.ModuleList(
            TemporalBlock(channels, hidden, kernel_size, 2**index, skip_channels=0) for index in range(blocks)
        )
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.embedding = nn.Linear(channels, embedding_dim)

    def forward(self, encoded: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(self.norm(encoded))
        for block in self.blocks:
            x, _ = block(x)
        return self.embedding(self.pool(x).squeeze(-1))


class SpeakerExtractor(nn.Module):
    """WASE-style extractor: (mixture `[B, T]`, enrollment `[B, T_e]`) -> target estimate `[B, T]`.

    Args:
        filters: Encoder/decoder filters (N).
        window: Encoder window in samples (L); the hop is `window // 2`.
        bottleneck: Separator channels (B).
        hidden: Channels inside each block (H).
        skip_channels: Channels of the skip paths (Sc).
        kernel_size: Depthwise kernel (P).
        blocks: Blocks per stack (X); dilations 1..2^(X-1).
        stacks: Stacks (R); each is conditioned on the voiceprint.
        embedding_dim: Voiceprint size.
        voiceprint_blocks: Blocks of the voiceprint branch.
    """

    def __init__(
        self,
        filters: int = 64,
        window: int = 16,
        bottleneck: int = 64,
        hidden: int = 128,
        skip_channels: int = 64,
        kernel_size: int = 3,
        blocks: int = 5,
        stacks: int = 3,
        embedding_dim: int = 64,
        voiceprint_blocks: int = 2,
    ) -> None:
        super().__init__()
        sizes = dict(
            filters=filters, bottleneck=bottleneck, hidden=hidden, skip_channels=skip_channels,
            blocks=blocks, stacks=stacks, embedding_dim=embedding_dim, voiceprint_blocks=voiceprint_blocks,
        )  # fmt: skip
        for key, value in sizes.items():
            if value < 1:
                raise ValueError(f"model.{key}={value}: must be >= 1")
        if window < 2 or window % 2:
            raise ValueError(f"model.window={window}: must be an even number of samples >= 2")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"model.kernel_size={kernel_size}: must be odd (keeps frames aligned)")
        self.window = window
        self.stride = window // 2
        self.encoder = FramedEncoder(filters, window, self.stride)
        self.encoder_relu = nn.ReLU()
        self.voiceprint = VoiceprintEncoder(filters, bottleneck, hidden, kernel_size, voiceprint_blocks, embedding_dim)
        self.input_norm = _global_layer_norm(filters)
        self.bottleneck = nn.Conv1d(filters, bottleneck, 1)
        self.stacks = nn.ModuleList(
            SeparatorStack(bottleneck, hidden, skip_channels, kernel_size, blocks, embedding_dim) for _ in range(stacks)
        )
        self.stack_adds = nn.ModuleList(Add() for _ in range(stacks - 1))
        self.cue = nn.Conv1d(bottleneck, 1, 1)
        self.cue_sigmoid = nn.Sigmoid()
        self.cue_gate = Multiply()
        self.mask_act = PReLU()
        self.mask = nn.Conv1d(skip_channels, filters, 1)
        self.mask_sigmoid = nn.Sigmoid()
        self.apply_mask = Multiply()
        self.decoder = OverlapAddDecoder(filters, window, self.stride)

    def forward(self, mixture: torch.Tensor, enrollment: torch.Tensor) -> torch.Tensor:
        return self.forward_with_taps(mixture, enrollment)[0]

    def forward_with_taps(
        self, mixture: torch.Tensor, enrollment: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Estimate plus named intermediate outputs.

        Returns:
            The estimate `[B, T]` and taps: "voiceprint" `[B, embedding_dim]`, "activity" (cue
            logits per encoder frame) `[B, frames]`, "mask" `[B, filters, frames]`, "estimate".
        """
        length = self._check_input("mixture", mixture)
        self._check_input("enrollment", enrollment)
        if enrollment.shape[0] != mixture.shape[0]:
            raise ValueError(f"enrollment batch {enrollment.shape[0]} differs from mixture batch {mixture.shape[0]}")
        taps = {"voiceprint": self.voiceprint(self._encode(enrollment))}
        encoded = self._encode(mixture)
        x = self.bottleneck(self.input_norm(encoded))
        skips = None
        for index, stack in enumerate(self.stacks):
            x, stack_skips = stack(x, taps["voiceprint"])
            skips = stack_skips if skips is None else self.stack_adds[index - 1](skips, stack_skips)
            if index == 0:
                taps["activity"] = self.cue(x).squeeze(1)
                x = self.cue_gate(x, self.cue_sigmoid(taps["activity"]).unsqueeze(1))
        taps["mask"] = self.mask_sigmoid(self.mask(self.mask_act(skips)))
        decoded = self.decoder(self.apply_mask(encoded, taps["mask"])).squeeze(1)
        taps["estimate"] = fit_to_mixture(decoded[:, :length], mixture)
        return taps["estimate"], taps

    def frames(self, samples: int) -> int:
        """Encoder frames for an input of `samples` samples (the last window zero-padded)."""
        return -(-max(samples - self.window, 0) // self.stride) + 1

    def example_inputs(self, sample_rate: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One second of mixture and one of enrollment (the description prices the voiceprint per second too)."""
        return torch.zeros(1, sample_rate), torch.zeros(1, sample_rate)

    def repeated_blocks(self) -> list[list[str]]:
        """Blocks of equal shapes that parameter sharing may tie: the separator's stacks."""
        return [[f"stacks.{index}" for index in range(len(self.stacks))]]

    def layer_groups(self) -> dict[str, list[str]]:
        """Quantizable layers grouped as encoder, voiceprint, bottleneck, stack0.., cue, mask, decoder."""
        groups: dict[str, list[str]] = {}
        for name, module in self.named_modules():
            if isinstance(module, QUANTIZABLE_TYPES):
                parts = name.split(".")
                group = f"stack{parts[1]}" if parts[0] == "stacks" else parts[0]
                groups.setdefault(group, []).append(name)
        return groups

    def _encode(self, audio: torch.Tensor) -> torch.Tensor:
        frames = self.frames(audio.shape[-1])
        padded = F.pad(audio, (0, (frames - 1) * self.stride + self.window - audio.shape[-1]))
        return self.encoder_relu(self.encoder(padded.unsqueeze(1)))

    def _check_input(self, name: str, audio: torch.Tensor) -> int:
        if audio.dim() != 2:
            raise ValueError(f"{name}: expected [batch, samples], got shape {tuple(audio.shape)}")
        if audio.shape[-1] < self.window:
            raise ValueError(
                f"{name}: {audio.shape[-1]} samples is shorter than the encoder window ({self.window} samples)"
            )
        return audio.shape[-1]
