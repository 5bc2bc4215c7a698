"""Experiment tracking: a runner record becomes a TensorBoard run that holds its loss curve, scores and settings."""

import pytest

from ran.errors import ConfigError
from ran.tracking import TrackConfig, log_run, score_scalars

RECORD = {
    "task": "recall", "seed": 3,
    "loss_curve": [2.0, 1.5, 0.25],
    "stateless_loss_curve": [2.0, 1.9, 1.8],
    "scores": {
        "carried": {"value": 1.0, "groups": [
            {"split": "trained", "filler": "distractor", "delay": 0, "recall": 1.0, "n": 6},
            {"split": "trained", "filler": "distractor", "delay": 16, "recall": 0.5, "n": 6}],
            "predictions": [{"key": "cloud", "predicted": " cloud"}]},
        "wiped": {"value": 0.0, "tasks": {"timed": {"value": 0.25, "on_time": 0.5}}},
    },
    "ran_config": {"mode": "kv", "reservoir": {"units": 64, "leak_rate_min": None}},
    "train_config": {"steps": 3, "delays": [0, 8]},
}


def test_scores_become_scalars_with_the_delay_as_the_step():
    carried = score_scalars(RECORD["scores"]["carried"])
    assert ("value", 1.0, 0) in carried
    assert ("by_delay/split=trained/filler=distractor/recall", 0.5, 16) in carried
    assert not any("predictions" in tag or tag.endswith("/n") for tag, _, _ in carried)
    assert score_scalars(RECORD["scores"]["wiped"]) == [("value", 0.0, 0), ("timed/value", 0.25, 0),
                                                        ("timed/on_time", 0.5, 0)]


def test_a_logged_run_reads_back_from_its_event_files(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    folder = log_run(TrackConfig(directory=str(tmp_path), experiment="retention"), RECORD, label="arm1",
                     artifact=tmp_path / "artifact")
    assert folder.parent == tmp_path / "retention" and folder.name.endswith("recall-seed3-arm1")
    events = EventAccumulator(str(folder))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("loss/train")] == [(0, 2.0), (1, 1.5), (2, 0.25)]
    assert [e.value for e in events.Scalars("loss/stateless")] == pytest.approx([2.0, 1.9, 1.8])
    curve = events.Scalars("carried/by_delay/split=trained/filler=distractor/recall")
    assert [(e.step, e.value) for e in curve] == [(0, 1.0), (16, 0.5)]
    assert events.Scalars("wiped/timed/on_time")[0].value == 0.5
    assert "artifact/text_summary" in events.Tags()["tensors"]


def test_tracking_settings_are_checked():
    with pytest.raises(ConfigError, match="unknown tracker 'wandb'"):
        TrackConfig(kind="wandb")
    with pytest.raises(ConfigError, match="experiment name"):
        TrackConfig(experiment="../elsewhere")
