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
        distillation_taps: Intermediate outputs of the model (`forward_with_taps` names, e.g.
            GE2E's "lstm": every frame of its last LSTM layer) the student also matches to the
            FP32 teacher's, by relative squared error. The embedding alone is one vector per crop;
            a frame-level tap gives a signal per frame, which a low-bit recurrent model needs
            (docs/pretrained.md has the measurements).
        tap_weight: Weight of the tap term (the mean over `distillation_taps`).
        max_grad_norm: Gradients are scaled down to this global L2 norm before each step; 0 (the
            default) leaves them as they are. A recurrent model can take one huge gradient that
            throws a low-bit run off for good (GE2E was trained with its gradients clipped, at 3).
        msft: Quantize layer groups progressively over the first positive rung (MSFT).
        msft_order: "sensitivity" (least sensitive group first), "forward" or "backward".
        sensitivity_quantizer, sensitivity_bits: How each layer is quantized to measure its sensitivity.
        sensitivity_crops: Training crops the sensitivities are measured on.
    """

    crop_frames: int = 150
    margin: float = 0.2
    scale: float = 30.0
    classification_weight: float = 1.0
    distillation_taps: tuple[str, ...] = ()
    tap_weight: float = 1.0
    max_grad_norm: float = 0.0
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
        if isinstance(self.distillation_taps, str) or not all(isinstance(tap, str) for tap in self.distillation_taps):
            raise ValueError(f"fidelity.distillation_taps={self.distillation_taps!r}: expected a list of tap names")
        object.__setattr__(self, "distillation_taps", tuple(self.distillation_taps))
        if len(set(self.distillation_taps)) != len(self.distillation_taps):
            raise ValueError(f"fidelity.distillation_taps={list(self.distillation_taps)}: a tap is named twice")
        if self.tap_weight < 0:
            raise ValueError(f"fidelity.tap_weight={self.tap_weight}: must be >= 0")
        if self.max_grad_norm < 0:
            raise ValueError(f"fidelity.max_grad_norm={self.max_grad_norm}: must be >= 0 (0: no clipping)")
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
