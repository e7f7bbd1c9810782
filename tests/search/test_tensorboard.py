import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import api_pb2, metadata

from search.pareto import Objective, hypervolume_history, pareto_front
from search.run_dir import RunDirectory
from search.tensorboard import write_tensorboard

OBJECTIVES = [Objective("eer", "min"), Objective("size_bytes", "min"), Objective("latency_ms", "min")]
METRICS = ["eer", "min_dcf", "size_bytes", "latency_ms"]
REFERENCE = {
    "trial": "fp32", "status": "reference", "eer": 0.05, "min_dcf": 0.5, "size_bytes": 800_000.0, "latency_ms": 5.0
}
TRIALS = [
    {"trial": 0, "status": "complete", "bits.stem": 8, "bits.layer1": 8, "bits.head": 8,
     "eer": 0.051, "min_dcf": 0.51, "size_bytes": 200_000.0, "latency_ms": 3.0, "error": "", "seconds": 1.5},
    {"trial": 1, "status": "complete", "bits.stem": 4, "bits.layer1": 4, "bits.head": 4,
     "eer": 0.060, "min_dcf": 0.55, "size_bytes": 100_000.0, "latency_ms": 3.1, "error": "", "seconds": 1.2},
    {"trial": 2, "status": "failed", "bits.stem": 2, "bits.layer1": 2, "bits.head": 2,
     "error": "ValueError: diverged", "seconds": None},
    {"trial": 3, "status": "complete", "bits.stem": 6, "bits.layer1": 3,
     "eer": 0.070, "min_dcf": 0.60, "size_bytes": 180_000.0, "latency_ms": 3.2, "error": "", "seconds": 1.1},
    {"trial": 4, "status": "complete", "bits.stem": 8, "bits.layer1": 2, "bits.head": 3,
     "eer": 0.090, "min_dcf": 0.70, "size_bytes": 90_000.0, "latency_ms": 3.0, "error": "", "seconds": 1.3},
    {"trial": 5, "status": "complete", "bits.stem": 3, "bits.layer1": 4, "bits.head": 6,
     "eer": 0.055, "min_dcf": 0.52, "size_bytes": 120_000.0, "latency_ms": 3.1, "error": "", "seconds": 1.4},
]
KNOBS = {"bits/stem": "bits.stem", "bits/layer1": "bits.layer1", "bits/head": "bits.head"}


def _make_run(path) -> RunDirectory:
    run = RunDirectory(path)
    run.write_config({"name": "synthetic", "objectives": [[o.metric, o.direction] for o in OBJECTIVES]})
    run.write_reference(REFERENCE)
    for row in TRIALS:
        run.append_trial(row)
    complete = [row for row in TRIALS if row["status"] == "complete"]
    members = [complete[index] for index in pareto_front(complete, OBJECTIVES)]
    run.write_pareto([{"metric": o.metric, "direction": o.direction} for o in OBJECTIVES], REFERENCE, members)
    run.write_hypervolume(hypervolume_history(TRIALS, OBJECTIVES, REFERENCE))
    return run


def _load(path) -> EventAccumulator:
    accumulator = EventAccumulator(str(path), size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


def _hparams_content(accumulator: EventAccumulator, tag: str) -> bytes:
    return accumulator.PluginTagToContent(metadata.PLUGIN_NAME)[tag]


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    run = _make_run(tmp_path_factory.mktemp("run"))
    return run, write_tensorboard(run)


def test_every_trial_has_a_session_with_its_knobs_metrics_and_status(written):
    _, root = written
    for row in TRIALS:
        accumulator = _load(root / "hparams" / f"trial-{row['trial']:04d}")
        start_content = _hparams_content(accumulator, metadata.SESSION_START_INFO_TAG)
        start = metadata.parse_session_start_info_plugin_data(start_content)
        knobs = {name: value.number_value for name, value in start.hparams.items()}
        assert knobs == {name: float(row.get(key, 32)) for name, key in KNOBS.items()}
        end = metadata.parse_session_end_info_plugin_data(_hparams_content(accumulator, metadata.SESSION_END_INFO_TAG))
        scalars = accumulator.Tags()["scalars"]
        if row["status"] == "complete":
            assert end.status == api_pb2.STATUS_SUCCESS
            for metric in [*METRICS, "seconds"]:
                assert [event.value for event in accumulator.Scalars(metric)] == [pytest.approx(row[metric], rel=1e-6)]
        else:
            assert end.status == api_pb2.STATUS_FAILURE
            assert scalars == []


def test_experiment_summary_lists_every_knob_and_metric(written):
    _, root = written
    accumulator = _load(root / "hparams")
    experiment = metadata.parse_experiment_plugin_data(_hparams_content(accumulator, metadata.EXPERIMENT_TAG))
    assert [info.name for info in experiment.hparam_infos] == list(KNOBS)
    assert all(info.type == api_pb2.DATA_TYPE_FLOAT64 for info in experiment.hparam_infos)
    assert [info.name.tag for info in experiment.metric_infos] == [*METRICS, "seconds"]


def test_hypervolume_scalar_has_one_value_per_finished_trial_matching_the_csv(written):
    run, root = written
    events = _load(root / "search").Scalars("hypervolume")
    assert [event.step for event in events] == list(range(1, len(TRIALS) + 1))
    assert [event.value for event in events] == pytest.approx(run.read_hypervolume(), rel=1e-6)


def test_front_size_and_best_eer_under_size_budgets_per_step(written):
    _, root = written
    accumulator = _load(root / "search")
    assert [event.value for event in accumulator.Scalars("front_size")] == [1, 2, 2, 2, 3, 4]
    quarter = accumulator.Scalars("best_eer/size_le_fp32_div_4")
    assert [(event.step, event.value) for event in quarter] == [
        (1, pytest.approx(0.051)), (2, pytest.approx(0.051)), (3, pytest.approx(0.051)),
        (4, pytest.approx(0.051)), (5, pytest.approx(0.051)), (6, pytest.approx(0.051)),
    ]
    sixth = accumulator.Scalars("best_eer/size_le_fp32_div_6")
    assert [(event.step, event.value) for event in sixth] == [
        (2, pytest.approx(0.060)), (3, pytest.approx(0.060)), (4, pytest.approx(0.060)),
        (5, pytest.approx(0.060)), (6, pytest.approx(0.055)),
    ]


def test_pareto_figures_and_bits_heatmap_are_images(written):
    _, root = written
    accumulator = _load(root / "search")
    expected = {
        "pareto/eer_vs_size_bytes", "pareto/eer_vs_latency_ms", "pareto/size_bytes_vs_latency_ms", "front/bits_heatmap",
        "quality/eer_vs_size_bytes_by_quantizer",
    }
    assert set(accumulator.Tags()["images"]) == expected
    for tag in expected:
        (image,) = accumulator.Images(tag)
        assert image.step == len(TRIALS)
        assert image.encoded_image_string.startswith(b"\x89PNG")


def test_quantizer_figure_has_one_series_per_quantizer_kind():
    from search.pareto import Objective
    from search.tensorboard import front_figures

    complete = [dict(row, quantizer=kind) for row, kind in zip(
        [row for row in TRIALS if row["status"] == "complete"], ["uniform", "kmeans", "uniform", "pow2", "kmeans"]
    )]
    figure = front_figures(complete, [Objective("eer", "min"), Objective("size_bytes", "min")], REFERENCE, [])[
        "quality/eer_vs_size_bytes_by_quantizer"
    ]
    labels = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    assert labels == ["kmeans", "pow2", "uniform"]


def test_writing_twice_replaces_instead_of_duplicating(tmp_path):
    run = _make_run(tmp_path)
    write_tensorboard(run)
    root = write_tensorboard(run)
    event_files = sorted(path.parent.relative_to(root).as_posix() for path in root.rglob("events.out.tfevents.*"))
    sessions = [f"hparams/trial-{row['trial']:04d}" for row in TRIALS]
    assert event_files == sorted(["hparams", "search", *sessions])
    for session in sessions:
        assert len(_load(root / session).Tensors(metadata.SESSION_START_INFO_TAG)) == 1
    assert len(_load(root / "search").Scalars("hypervolume")) == len(TRIALS)
