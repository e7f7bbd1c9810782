"""Model families, built by name from keyword arguments (a WeSpeaker-style registry)."""

from __future__ import annotations

from typing import Any, Callable

from torch import nn

from spaces.models.ecapa_tdnn import EcapaTdnn
from spaces.models.extractor import SpeakerExtractor
from spaces.models.ge2e import Ge2eEncoder
from spaces.models.resnet import ResNet
from spaces.models.speechbrain_ecapa import SpeechbrainEcapaTdnn
from spaces.models.wespeaker_ecapa import WespeakerEcapaTdnn
from spaces.models.wespeaker_resnet import WespeakerResNet
from spaces.models.xvector import XVector

MODEL_FAMILIES: dict[str, Callable[..., nn.Module]] = {
    "ecapa_tdnn": EcapaTdnn,
    "extractor": SpeakerExtractor,
    "ge2e": Ge2eEncoder,
    "resnet": ResNet,
    "speechbrain_ecapa": SpeechbrainEcapaTdnn,
    "wespeaker_ecapa": WespeakerEcapaTdnn,
    "wespeaker_resnet": WespeakerResNet,
    "xvector": XVector,
}


def build_model(family: str, **kwargs: Any) -> nn.Module:
    """Build a model of `family`; unknown families and keyword arguments raise a clear error."""
    if family not in MODEL_FAMILIES:
        raise ValueError(f"model.family={family!r}: unknown family; available: {sorted(MODEL_FAMILIES)}")
    try:
        return MODEL_FAMILIES[family](**kwargs)
    except TypeError as error:
        raise ValueError(f"model: bad arguments for family {family!r}: {error}") from None


__all__ = [
    "MODEL_FAMILIES",
    "EcapaTdnn",
    "Ge2eEncoder",
    "ResNet",
    "SpeakerExtractor",
    "SpeechbrainEcapaTdnn",
    "WespeakerEcapaTdnn",
    "WespeakerResNet",
    "XVector",
    "build_model",
]
