"""The private attributes and unwritten behaviours of Optuna and Ray Tune that our code relies on.

An upgrade that drops one of them would otherwise surface as an AttributeError deep in a Ray
worker, or not at all (a trial silently left unannotated, a scheduler decision taken late). Each
check runs on real library objects, needs no Ray cluster, and names the library, the attribute and
the file of ours that depends on it.
"""

import inspect
import pickle
import threading

import optuna
import pytest
from ray.tune import Callback
from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler
from ray.tune.search.optuna import OptunaSearch

from search.pareto import Objective
from search.scheduler import ParetoHalving, ParetoHalvingScheduler

optuna.logging.set_verbosity(optuna.logging.WARNING)


def broken(library: str, attribute: str, ours: str, use: str) -> str:
    """The failure message: what changed upstream and what of ours stops working."""
    return f"{library}: {attribute} is gone or changed; {ours} relies on it to {use}"


def attribute(owner: object, name: str, library: str, ours: str, use: str) -> object:
    """`owner.name`, or a test failure naming who relies on it."""
    label = f"{type(owner).__name__}.{name}"
    assert hasattr(owner, name), broken(library, label, ours, use)
    return getattr(owner, name)


def picklable(value: object) -> bool:
    try:
        pickle.dumps(value)
    except Exception:
        return False
    return True


@pytest.fixture
def searcher_and_captor():
    """A plain Ray `OptunaSearch` set up the way the engine sets up its subclass, one trial suggested."""
    seen = []

    def define_by_run(trial):
        seen.append(trial)
        trial.suggest_categorical("bits", [4, 8])

    searcher = OptunaSearch(
        space=define_by_run, metric=["eer", "size_bytes"], mode=["min", "min"], sampler=optuna.samplers.RandomSampler(0)
    )
    searcher.suggest("t0")
    return searcher, seen[0]


def test_ray_optuna_search_keeps_the_study_and_trials_the_recording_search_reads(searcher_and_captor):
    searcher, _ = searcher_and_captor
    ours = "search/optuna_search.py (RecordingOptunaSearch)"
    study = attribute(searcher, "_ot_study", "Ray Tune", ours, "find the sampler and see a candidate list used up")
    assert isinstance(study, optuna.Study), broken(
        "Ray Tune", "OptunaSearch._ot_study (an optuna.Study)", ours, "find the sampler and count the study's trials"
    )
    trials = attribute(searcher, "_ot_trials", "Ray Tune", ours, "find the Optuna trial of a Tune trial id")
    assert isinstance(trials.get("t0"), optuna.Trial), broken(
        "Ray Tune", "OptunaSearch._ot_trials (trial id -> optuna.Trial)", ours, "annotate the trial before it is told"
    )


def test_ray_optuna_search_marks_a_told_trial_completed(searcher_and_captor):
    searcher, _ = searcher_and_captor
    ours = "search/optuna_search.py (RecordingOptunaSearch.on_trial_complete)"
    use = "annotate each trial once, before Ray tells it"
    completed = attribute(searcher, "_completed_trials", "Ray Tune", ours, use)
    assert "t0" not in completed
    parameters = list(inspect.signature(OptunaSearch.on_trial_complete).parameters)
    assert parameters == ["self", "trial_id", "result", "error"], broken(
        "Ray Tune", f"OptunaSearch.on_trial_complete(trial_id, result, error), now {parameters}", ours, use
    )
    searcher.on_trial_complete("t0", {"eer": 0.1, "size_bytes": 10.0})
    assert "t0" in searcher._completed_trials, broken("Ray Tune", "OptunaSearch._completed_trials", ours, use)
    assert searcher._ot_study.trials[0].state == optuna.trial.TrialState.COMPLETE


def test_ray_passes_the_define_by_run_function_a_wrapper_holding_the_optuna_trial(searcher_and_captor):
    searcher, captor = searcher_and_captor
    ot_trial = getattr(captor, "ot_trial", None)
    assert isinstance(ot_trial, optuna.Trial), broken(
        "Ray Tune",
        "the define-by-run argument's `.ot_trial` (an optuna.Trial)",
        "search/engine.py (_DefineByRun)",
        "tag each Tune trial with its Optuna trial number",
    )
    assert ot_trial.number == searcher._ot_trials["t0"].number == 0


def test_optuna_nsga2_holds_no_unpicklable_state_but_the_lock_our_subclass_drops():
    sampler = optuna.samplers.NSGAIISampler(population_size=4, seed=0)
    unpicklable = sorted(name for name, value in vars(sampler).items() if not picklable(value))
    ours = "search/samplers.py (PicklableNSGAIISampler)"
    assert unpicklable == ["_thread_lock"], broken(
        "Optuna",
        f"NSGAIISampler._thread_lock as its only unpicklable attribute (now: {unpicklable})",
        ours,
        "drop that lock when Ray pickles the searcher (rename it there, or drop the subclass if nothing is left)",
    )
    assert type(sampler._thread_lock) is type(threading.Lock()), broken(
        "Optuna", f"NSGAIISampler._thread_lock as a threading.Lock (now {type(sampler._thread_lock)})", ours,
        "recreate the same kind of lock on unpickling",
    )


def test_optuna_builds_a_live_trial_from_a_frozen_trials_storage_id():
    study = optuna.create_study(directions=["minimize", "minimize"])
    asked = study.ask()
    (frozen,) = study.get_trials(deepcopy=False)
    ours = "search/resume.py (_tell_from_row)"
    use = "store a recorded row's metrics on a trial a dead driver left running"
    trial_id = attribute(frozen, "_trial_id", "Optuna", ours, use)
    live = optuna.Trial(study, trial_id)
    live.set_user_attr("eer", 0.1)
    assert live.number == asked.number and study.trials[0].user_attrs == {"eer": 0.1}, broken(
        "Optuna", "optuna.Trial(study, frozen._trial_id) as a handle on the same trial", ours, use
    )


def test_ray_trial_carries_what_the_recorder_reads():
    trial = Trial("trainable", config={"trial_number": 0}, stub=True)
    ours = "search/engine.py (_Recorder, _error_reason)"
    for name in ("trial_id", "config", "last_result"):
        attribute(trial, name, "Ray Tune", ours, "record each finished trial's row")
    assert isinstance(inspect.getattr_static(Trial, "error_file", None), property), broken(
        "Ray Tune", "Trial.error_file", ours, "read a failed trial's one-line reason"
    )


@pytest.mark.parametrize("hook", ["on_trial_recover", "on_trial_complete", "on_trial_error"])
def test_ray_callback_hooks_keep_the_arguments_the_recorder_takes(hook):
    parameters = inspect.signature(getattr(Callback, hook)).parameters
    named = [name for name, parameter in parameters.items() if parameter.kind is not parameter.VAR_KEYWORD]
    assert named == ["self", "iteration", "trials", "trial"] and "info" in parameters, broken(
        "Ray Tune", f"Callback.{hook}(iteration, trials, trial, **info), now {list(parameters)}",
        "search/engine.py (_Recorder)", "count retries and record finished and failed trials",
    )


def test_ray_reads_the_schedulers_opt_out_of_buffered_results():
    scheduler = ParetoHalvingScheduler(ParetoHalving([Objective("eer", "min")], rungs=2))
    ours = "search/scheduler.py (ParetoHalvingScheduler)"
    use = "decide a promotion before the trial starts its next, costlier rung"
    assert scheduler.supports_buffered_results is False, broken(
        "Ray Tune", "TrialScheduler._supports_buffered_results (read by `supports_buffered_results`)", ours, use
    )
    parameters = list(inspect.signature(FIFOScheduler.on_trial_result).parameters)
    assert parameters == ["self", "tune_controller", "trial", "result"], broken(
        "Ray Tune", f"FIFOScheduler.on_trial_result(tune_controller, trial, result), now {parameters}", ours, use
    )
