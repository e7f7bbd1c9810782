"""Train a speaker-embedding model from scratch with AAM-softmax (the FP32 teacher).

A fixed step budget (not epochs) keeps the cost predictable on a laptop; the result is cached
by content hash by the caller, so a second run with the same corpus, model and seed reuses it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from evaluators.aam_softmax import AAMSoftmax
from evaluators.cache_keys import KEYED_WHEN_SET
from evaluators.features import FeatureSet, random_crop
from evaluators.frontends.ge2e import utterance_embedding as windows_embedding
from spaces.checkpoints import CHECKPOINT_FORMATS


class TrainingError(RuntimeError):
    """Training diverged (non-finite loss) or was given unusable data."""


@dataclass(frozen=True)
class TeacherConfig:
    """The `teacher:` block: how the FP32 reference model is trained.

    Attributes:
        steps: Optimiser steps (the budget).
        batch_size: Utterance crops per step.
        crop_frames: Frames per random training crop.
        learning_rate: Peak learning rate of the one-cycle schedule.
        weight_decay: AdamW weight decay.
        margin: AAM-softmax angular margin (radians), ramped up over the first 30% of steps.
        scale: AAM-softmax logit scale.
        checkpoint, format: Load this teacher instead of training it (the training settings are then unused).
    """

    steps: int = 600
    batch_size: int = 64
    crop_frames: int = 150
    learning_rate: float = 0.01
    weight_decay: float = 1e-4
    margin: float = 0.2
    scale: float = 30.0
    checkpoint: str | None = field(default=None, metadata=KEYED_WHEN_SET)
    """A trained model to load instead of training one (`spaces.checkpoints`); `package:DIST/PATH`
    names a file shipped inside an installed package (e.g. resemblyzer's GE2E weights)."""
    format: str = field(default="auto", metadata=KEYED_WHEN_SET)
    """The checkpoint's layout: native, wespeaker, speechbrain, resemblyzer, or auto (sniffed)."""

    def __post_init__(self) -> None:
        for key in ("steps", "batch_size", "crop_frames"):
            if getattr(self, key) < 1:
                raise ValueError(f"teacher.{key}={getattr(self, key)}: must be >= 1")
        if self.learning_rate <= 0:
            raise ValueError(f"teacher.learning_rate={self.learning_rate}: must be > 0")
        if self.format not in CHECKPOINT_FORMATS:
            raise ValueError(f"teacher.format={self.format!r}: expected one of {list(CHECKPOINT_FORMATS)}")
        if self.checkpoint == "":
            raise ValueError("teacher.checkpoint='': give a file, or leave the key out to train the teacher")


def train_speaker_model(
    model: nn.Module,
    embedding_dim: int,
    data: FeatureSet,
    config: TeacherConfig,
    seed: int,
    on_step: Callable[[int, float], None] | None = None,
) -> dict[str, torch.Tensor]:
    """Train `model` on random crops of `data` and return its state dict (head excluded).

    Args:
        on_step: Called with (step, loss) after every step (progress display).
    """
    if data.num_speakers < 2:
        raise TrainingError(f"training data has {data.num_speakers} speaker(s); need at least 2")
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    head = AAMSoftmax(embedding_dim, data.num_speakers, margin=0.0, scale=config.scale)
    parameters = list(model.parameters()) + list(head.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=config.learning_rate, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, config.learning_rate, total_steps=config.steps)
    labels = torch.tensor(data.labels)
    model.train()
    for step in range(config.steps):
        head.margin = config.margin * min(1.0, step / max(1, 0.3 * config.steps))
        batch = torch.randint(len(data.features), (config.batch_size,), generator=generator)
        crops = torch.stack([random_crop(data.features[i], config.crop_frames, generator) for i in batch.tolist()])
        loss = head(model(crops), labels[batch])
        if not torch.isfinite(loss):
            raise TrainingError(f"non-finite loss {loss.item()} at step {step}; lower teacher.learning_rate")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if on_step is not None:
            on_step(step, loss.item())
    model.eval()
    return {key: value.detach().clone() for key, value in model.state_dict().items()}


@torch.inference_mode()
def embed_utterances(model: nn.Module, features: list[torch.Tensor]) -> torch.Tensor:
    """Embeddings of full utterances, one forward pass each (lengths differ), `[n, dim]`.

    An utterance given as partial windows (`[windows, frames, bins]`, the GE2E front-end's) is
    embedded as its upstream does: the normalised mean of its windows' embeddings.
    """
    model.eval()
    return torch.stack([_utterance_embedding(model, utterance) for utterance in features])


def _utterance_embedding(model: nn.Module, utterance: torch.Tensor) -> torch.Tensor:
    if utterance.dim() == 3:
        return windows_embedding(model, utterance)
    return model(utterance.unsqueeze(0))[0]
