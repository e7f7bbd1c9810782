"""Every ready config in configs/ validates, builds its model and samples candidates."""

from pathlib import Path

import optuna
import pytest
import yaml

from search.config import load_config
from search.tasks import get_task
from spaces.compress import compress
from spaces.space import SearchSpace

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


def test_configs_folder_has_the_family_configs():
    assert {"demo.yaml", "sv_resnet.yaml", "sv_ecapa.yaml", "sv_xvector.yaml"} <= {path.name for path in CONFIGS}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda path: path.name)
def test_config_validates_and_samples(path, tmp_path):
    config = load_config(path)
    spec = get_task(config.task).model_spec(config)
    model = spec.build()
    space = SearchSpace.for_model(config.space, spec, model)
    fp32_size = compress(spec, model.state_dict(), {}).description.size_bytes
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(2):
        trial = study.ask()
        space.suggest(trial)
        plan = space.plan(trial.params)
        compressed = compress(spec, model.state_dict(), plan.layer_bits, plan.layer_quantizers)
        assert 0 < compressed.description.size_bytes <= fp32_size
    resolved = tmp_path / "config.yaml"
    resolved.write_text(yaml.safe_dump(config.to_dict()))
    assert load_config(resolved) == config
