"""Progress: every preparation stage reports its end, and the display shows finished stages finished."""

import io

from rich.console import Console

from evaluators.verification import VerificationEvaluator
from search.config import load_config
from search.progress import RichDisplay
from search.tasks.verification_setup import verification_setup
from tiny_config import tiny_config


def _terminal() -> Console:
    return Console(file=io.StringIO(), force_terminal=True, width=100)


def _log() -> tuple[Console, io.StringIO]:
    stream = io.StringIO()
    return Console(file=stream, force_terminal=False, force_jupyter=False, width=100), stream


def test_each_stage_of_a_fresh_preparation_ends_at_its_total(tmp_path, single_thread):
    """Fine-tuning's centroids and sensitivities reported (0, 1) and never (1, 1): their bars ran on."""
    (tmp_path / "tiny.yaml").write_text(tiny_config(tmp_path / "cache", extra="fidelity: {steps: [0, 2]}\n"))
    config = load_config(tmp_path / "tiny.yaml")
    last = {}
    display = RichDisplay(_terminal())

    def progress(stage, done, total):
        last[stage.split(" (")[0]] = (done, total)
        display.stage(stage, done, total)

    with display:
        VerificationEvaluator().prepare(verification_setup(config), progress)
    assert {"speaker centroids", "layer sensitivities", "teacher", "train features"} <= set(last)
    assert all(done == total for done, total in last.values()), last
    assert all(task.finished for task in display._progress.tasks)


def test_a_stage_left_open_is_finished_when_the_next_one_starts():
    display = RichDisplay(_terminal())
    with display:
        display.stage("teacher checkpoint", 0, 1)
        display.stage("train features", 2, 10)
        first, second = display._progress.tasks
        assert first.finished and first.completed == 1 and not second.finished
        display.started(4)
        assert second.finished and second.finished_time is not None


def test_outside_a_terminal_each_stage_and_trial_is_one_line():
    console, stream = _log()
    with RichDisplay(console) as display:
        display.stage("train features", 0, 3)
        display.stage("train features", 3, 3)
        display.stage("teacher (loss 2.31)", 1, 5)
        display.started(2)
        display.trial_finished({"trial": 0, "status": "complete", "eer": 0.1}, [{"status": "complete", "eer": 0.1}], [{}])
    lines = stream.getvalue().splitlines()
    assert lines[0] == "train features ..." and lines[1].startswith("train features: done in ")
    assert lines[2] == "teacher ..." and lines[3].startswith("teacher: done in ")
    assert lines[4].startswith("trials: 2 to run")
    assert lines[5] == "trial 0 complete (1/2): failed 0 | front 1 | best EER 10.00%"
    assert len(lines) == 6  # no bars rendered into the log
