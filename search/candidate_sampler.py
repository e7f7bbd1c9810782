"""An Optuna sampler that decides a whole candidate per trial and hands it out one parameter at a time.

Optuna asks a sampler for parameters one by one as the space's define-by-run `suggest` reaches
them. The replayed sequences (`search.samplers.CandidateSequenceSampler`) and the screened
sampler (`search.screened_sampler.ScreenedSampler`) choose every knob of a trial together, so
they have no relative search space: each answers which candidate a trial takes and what a
parameter the candidate does not name gets, and this base does the rest.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.study import Study
from optuna.trial import FrozenTrial

from search.candidate_sequences import Candidate


class CandidateSampler(BaseSampler):
    """Proposes `candidate_for(study, trial)`; a parameter it does not name comes from `unnamed_parameter`."""

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return {}

    def sample_independent(
        self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        candidate = self.candidate_for(study, trial)
        if param_name in candidate:
            return candidate[param_name]
        return self.unnamed_parameter(study, trial, param_name, param_distribution)

    @abstractmethod
    def candidate_for(self, study: Study, trial: FrozenTrial) -> Candidate:
        """The candidate `trial` takes (the same one for every parameter of the trial)."""

    @abstractmethod
    def unnamed_parameter(
        self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        """A value for a parameter the trial's candidate does not name (another space's knob)."""


__all__ = ["CandidateSampler"]
