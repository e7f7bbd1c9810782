"""The `fidelity:` settings only speaker-verification fine-tuning reads.

Verification candidates train on random filterbank crops with an AAM-softmax head, can be
quantized stage by stage (MSFT), and need per-layer sensitivities for MSFT's order and the
sensitivity-greedy sampler; an extraction run has none of these, so they extend the shared
`FidelityConfig` here rather than living in it.
"""

from __future__ import annotations

from dataclasses import dataclass

from evaluators.fidelity import FidelityConfig
from evaluators.msft import MSFT_ORDERS
from spaces.quant import QUANTIZERS


@dataclass(frozen=True)
class VerificationFidelity(FidelityConfig):
    """The shared ladder plus verification's crop, loss, MSFT and sensitivity settings.

    Attributes:
        crop_frames: Frames per training crop.
        margin, scale: AAM-softmax margin (radians) and logit scale.
        classification_weight: Weight of the AAM-softmax term; 0 fine-tunes on the distance to
            the teacher's embeddings alone (no speaker labels needed: a pretrained model's path).
        msft: Quantize layer groups progressively over the first positive rung (MSFT).
        msft_order: "sensitivity" (least sensitive group first), "forward" or "backward".
        sensitivity_quantizer, sensitivity_bits: How each layer is quantized to measure its sensitivity.
        sensitivity_crops: Training crops the sensitivities are measured on.
    """

    crop_frames: int = 150
    margin: float = 0.2
    scale: float = 30.0
    classification_weight: float = 1.0
    msft: bool = False
    msft_order: str = "sensitivity"
    sensitivity_quantizer: str = "uniform"
    sensitivity_bits: int = 3
    sensitivity_crops: int = 256

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("crop_frames", "sensitivity_crops"):
            if getattr(self, key) < 1:
                raise ValueError(f"fidelity.{key}={getattr(self, key)}: must be >= 1")
        if self.scale <= 0:
            raise ValueError(f"fidelity.scale={self.scale}: must be > 0")
        if self.classification_weight < 0:
            raise ValueError(f"fidelity.classification_weight={self.classification_weight}: must be >= 0")
        if self.trains and not self.classification_weight and not self.distillation_weight:
            raise ValueError(
                "fidelity.classification_weight and fidelity.distillation_weight are both 0: fine-tuning has no loss"
            )
        if self.margin < 0:
            raise ValueError(f"fidelity.margin={self.margin}: must be >= 0")
        if self.msft_order not in MSFT_ORDERS:
            raise ValueError(f"fidelity.msft_order={self.msft_order!r}: expected one of {list(MSFT_ORDERS)}")
        if self.sensitivity_quantizer not in QUANTIZERS:
            raise ValueError(
                f"fidelity.sensitivity_quantizer={self.sensitivity_quantizer!r}: unknown; available: {sorted(QUANTIZERS)}"
            )
        allowed = QUANTIZERS[self.sensitivity_quantizer].allowed_bits
        if self.sensitivity_bits not in allowed:
            raise ValueError(
                f"fidelity.sensitivity_bits={self.sensitivity_bits}: not supported by "
                f"{self.sensitivity_quantizer!r}; allowed: {list(allowed)}"
            )


__all__ = ["VerificationFidelity"]
