"""The `fidelity:` block both tasks share: the ladder of fine-tuning budgets and the QAT optimiser.

A candidate is measured after each rung of `steps` (cumulative budgets, 0 = post-training
quantization only); successive halving decides which candidates reach the longer rungs. What only
one task's fine-tuning reads (speaker-verification crops, AAM-softmax and MSFT settings) extends
this class in that task's module (`evaluators.verification_fidelity`), so an extraction config
cannot carry settings nothing would read.
"""

from __future__ import annotations

from dataclasses import dataclass

from spaces.quant.qat import QatOptions


@dataclass(frozen=True)
class FidelityConfig:
    """How much fine-tuning a candidate gets, and with which optimiser settings.

    Attributes:
        steps: Ladder of cumulative fine-tuning budgets, strictly increasing; 0 is PTQ only. A
            candidate is measured after each rung; its final metrics are the last rung's.
        learning_rate: Adam learning rate (constant, so a rung's result does not depend on later rungs).
        batch_size: Training examples per step.
        distillation_weight: Weight of the distance to the FP32 teacher's output.
        reassign_every: Steps between k-means code re-assignments.
        soft_step: K-means layers train through TinyWASE's annealed soft-step.
        temperature_start, temperature_end: Soft-step temperature range, annealed over the ladder.
    """

    steps: tuple[int, ...] = (0,)
    learning_rate: float = 1e-3
    batch_size: int = 32
    distillation_weight: float = 5.0
    reassign_every: int = 1
    soft_step: bool = False
    temperature_start: float = 0.5
    temperature_end: float = 0.01

    def __post_init__(self) -> None:
        if not isinstance(self.steps, (tuple, list)) or not self.steps:
            raise ValueError(f"fidelity.steps={self.steps!r}: expected a non-empty list of step counts, e.g. [0, 200]")
        object.__setattr__(self, "steps", tuple(self.steps))
        if any(not isinstance(step, int) or isinstance(step, bool) or step < 0 for step in self.steps):
            raise ValueError(f"fidelity.steps={list(self.steps)}: step counts must be integers >= 0")
        if any(later <= earlier for earlier, later in zip(self.steps, self.steps[1:])):
            raise ValueError(f"fidelity.steps={list(self.steps)}: must be strictly increasing (cumulative budgets)")
        for key in ("batch_size", "reassign_every"):
            if getattr(self, key) < 1:
                raise ValueError(f"fidelity.{key}={getattr(self, key)}: must be >= 1")
        if self.learning_rate <= 0:
            raise ValueError(f"fidelity.learning_rate={self.learning_rate}: must be > 0")
        if self.distillation_weight < 0:
            raise ValueError(f"fidelity.distillation_weight={self.distillation_weight}: must be >= 0")
        if not 0 < self.temperature_end <= self.temperature_start:
            raise ValueError(
                f"fidelity.temperature_end={self.temperature_end}: need 0 < temperature_end <= temperature_start"
            )

    @property
    def trains(self) -> bool:
        """Whether any rung fine-tunes (otherwise every candidate is post-training quantized)."""
        return self.steps[-1] > 0

    @property
    def qat_options(self) -> QatOptions:
        return QatOptions(self.reassign_every, self.soft_step, self.temperature_start, self.temperature_end)


__all__ = ["FidelityConfig"]
