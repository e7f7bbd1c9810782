"""The GE2E speaker encoder (Wan et al. 2018) as shipped in the `resemblyzer` wheel.

Upstream: `resemblyzer/voice_encoder.py` (`VoiceEncoder`) and `hparams.py` of resemblyzer 0.1.4:
a 3-layer LSTM of 256 units over 40 mel bands, a linear layer to 256, ReLU and L2 normalisation
of the last frame's output. Parameter names are upstream's (`lstm.weight_ih_l0`, ...,
`linear.weight`) are accepted as they are: the LSTM is a `QuantizableLSTM`, which renames them
to its per-matrix layers (`lstm.l0.ih.weight`, ...), so the wheel's `pretrained.pt` loads strictly
(`spaces.checkpoints`).

The model embeds windows: a batch of partial utterances (160 frames each upstream) in, one
embedding per window out. The utterance embedding (the L2-normalised mean over windows) and the
windowing belong to the front-end, `evaluators.frontends.ge2e`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from spaces.models.recurrent import QuantizableLSTM


class Ge2eEncoder(nn.Module):
    """GE2E encoder: mel windows `[batch, frames, num_mel_bins]` -> unit embeddings `[batch, embedding_dim]`.

    Args (resemblyzer's hparams: 40, 256, 256, 3):
        num_mel_bins: Mel bands of the input (`mel_n_channels`).
        hidden_size: LSTM units per layer (`model_hidden_size`).
        embedding_dim: Size of the embedding (`model_embedding_size`).
        num_layers: Stacked LSTM layers (`model_num_layers`).
    """

    def __init__(
        self, num_mel_bins: int = 40, hidden_size: int = 256, embedding_dim: int = 256, num_layers: int = 3
    ) -> None:
        super().__init__()
        sizes = dict(
            num_mel_bins=num_mel_bins, hidden_size=hidden_size, embedding_dim=embedding_dim, num_layers=num_layers
        )
        for key, value in sizes.items():
            if value < 1:
                raise ValueError(f"model.{key}={value}: must be >= 1")
        self.lstm = QuantizableLSTM(num_mel_bins, hidden_size, num_layers, batch_first=True)
        self.linear = nn.Linear(hidden_size, embedding_dim)
        self.relu = nn.ReLU()
        self.embedding_dim = embedding_dim

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.forward_with_taps(features)[0]

    def forward_with_taps(self, features: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Embedding plus the named intermediate outputs that distillation can match.

        The last layer's output at the last frame is upstream's `hidden[-1]` (the same values).
        Upstream divides by the norm; `F.normalize` does too, except that it floors the norm at
        1e-12, so a window whose ReLU output is all zeros gives zeros instead of NaNs.

        Returns:
            The embedding `[B, embedding_dim]` and taps: "lstm" (the last layer's outputs)
            `[B, hidden_size, T]` and "embedding".
        """
        frames, _ = self.lstm(features)
        embedding = F.normalize(self.relu(self.linear(frames[:, -1])), dim=1)
        return embedding, {"lstm": frames.transpose(1, 2), "embedding": embedding}

    def layer_groups(self) -> dict[str, list[str]]:
        """One group per LSTM layer (`lstm.l0`: its input and recurrent matrices), then "linear"."""
        groups = {f"lstm.l{index}": [f"lstm.l{index}.ih", f"lstm.l{index}.hh"] for index in range(self.lstm.num_layers)}
        return {**groups, "linear": ["linear"]}
