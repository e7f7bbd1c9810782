"""The run's Optuna journal names its objectives, so Optuna's own tools label them."""

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from search.optuna_search import RecordingOptunaSearch

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_journal_study_names_its_objectives_for_the_dashboard_and_pareto_plot(tmp_path):
    journal = str(tmp_path / "study.journal")
    searcher = RecordingOptunaSearch(
        recorded_keys=["eer", "size_bytes"],
        space=lambda trial: {"bits.stem": trial.suggest_categorical("bits.stem", [4, 8])},
        metric=["eer", "size_bytes"],
        mode=["min", "min"],
        sampler=optuna.samplers.RandomSampler(seed=0),
        storage=JournalStorage(JournalFileBackend(journal)),
        study_name="named",
    )
    for number, result in enumerate([{"eer": 0.1, "size_bytes": 200.0}, {"eer": 0.2, "size_bytes": 100.0}]):
        searcher.suggest(f"t{number}")
        searcher.on_trial_complete(f"t{number}", result)

    study = optuna.load_study(study_name="named", storage=JournalStorage(JournalFileBackend(journal)))
    assert study.metric_names == ["eer", "size_bytes"]
    layout = optuna.visualization.plot_pareto_front(study).layout
    assert (layout.xaxis.title.text, layout.yaxis.title.text) == ("eer", "size_bytes")
