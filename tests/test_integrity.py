"""Tampering is detected: changed weight files, NaN weights and states, swapped session states and edited
configs are each refused in one line, and the files are left as they were."""

import json
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from tiny_models import tiny_model, tiny_session_model_dir

from ran.artifact import CONFIG_FILE, READOUT_FILE
from ran.cli import main
from ran.errors import ArtifactError, ConfigError, RanWarning
from ran.integrity import seal
from ran.limits import check_reservoir_size
from ran.model import RanConfig, ReservoirModel, wrap
from ran.reservoir import ReservoirConfig
from ran.runtime import Session, SessionConfig
from ran.runtime.persistence import STATE_FILE, SessionStore, load_state, save_state

SMALL = ReservoirConfig(units=32, input_scaling=0.5)


def _artifact(path: Path, **config) -> Path:
    model = wrap(tiny_model("llama"), RanConfig(reservoir=SMALL, **config))
    with torch.no_grad():
        for parameter in model.injector.parameters():
            parameter.normal_(0, 0.1)
    model.save_pretrained(path)
    model.unwrap()
    return path


def _files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def _refused(directory: Path, match: str) -> None:
    before = _files(directory)
    with pytest.raises(ArtifactError, match=match):
        ReservoirModel.from_pretrained(tiny_model("llama"), directory)
    assert _files(directory) == before  # a refused load writes nothing


def test_an_artifact_records_checksums_and_loads_back(tmp_path):
    directory = _artifact(tmp_path / "a", gate=True)
    description = json.loads((directory / CONFIG_FILE).read_text())
    assert set(description["files"]) == {READOUT_FILE, "gate.safetensors"} and description["checksum"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no legacy warning for a current artifact
        ReservoirModel.from_pretrained(tiny_model("llama"), directory).unwrap()


def test_a_flipped_byte_in_the_readout_is_refused(tmp_path):
    directory = _artifact(tmp_path / "a")
    data = bytearray((directory / READOUT_FILE).read_bytes())
    data[-3] ^= 0x01  # one bit of the last weight: still a valid safetensors file, still finite
    (directory / READOUT_FILE).write_bytes(bytes(data))
    _refused(directory, "does not match the SHA-256 recorded when it was saved")


def test_a_flipped_byte_in_the_gate_head_is_refused(tmp_path):
    directory = _artifact(tmp_path / "a", gate=True)
    data = bytearray((directory / "gate.safetensors").read_bytes())
    data[-2] ^= 0x10
    (directory / "gate.safetensors").write_bytes(bytes(data))
    _refused(directory, "gate file .* does not match the SHA-256")


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_even_with_a_matching_checksum(tmp_path, value):
    directory = _artifact(tmp_path / "a")
    tensors = load_file(directory / READOUT_FILE)
    name = sorted(tensors)[0]
    tensors[name][0] = value
    save_file(tensors, directory / READOUT_FILE)
    description = json.loads((directory / CONFIG_FILE).read_text())
    from ran.fileio import sha256_file

    description["files"][READOUT_FILE] = sha256_file(directory / READOUT_FILE)  # a tamperer who re-records it
    (directory / CONFIG_FILE).write_text(json.dumps(seal(description)))
    _refused(directory, f"NaN or infinite value.* in '{name}'")


def test_non_finite_weights_are_never_written(tmp_path):
    model = wrap(tiny_model("llama"), RanConfig(reservoir=SMALL))
    with torch.no_grad():
        next(model.injector.parameters())[0] = float("nan")
    with pytest.raises(ArtifactError, match="NaN or infinite"):
        model.save_pretrained(tmp_path / "a")
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize("edit", [
    {"config": {"layer": 1}}, {"config": {"summary": "mean"}}, {"pass_format": {"kind": "chat"}},
    {"reservoir_fingerprint": "0" * 64},
])
def test_an_edited_config_is_refused(tmp_path, edit):
    directory = _artifact(tmp_path / "a")
    description = json.loads((directory / CONFIG_FILE).read_text())
    for key, value in edit.items():
        description[key] = {**description[key], **value} if isinstance(value, dict) else value
    (directory / CONFIG_FILE).write_text(json.dumps(description, indent=2))
    _refused(directory, "was edited after it was saved")


def test_a_weight_file_the_artifact_did_not_save_is_refused(tmp_path):
    directory = _artifact(tmp_path / "a")
    other = _artifact(tmp_path / "b", gate=True)
    (directory / "gate.safetensors").write_bytes((other / "gate.safetensors").read_bytes())
    description = json.loads((directory / CONFIG_FILE).read_text())
    description["config"]["gate"] = True
    (directory / CONFIG_FILE).write_text(json.dumps(seal(description)))
    _refused(directory, "is not listed in")


def test_an_artifact_saved_before_checksums_loads_with_one_warning(tmp_path):
    directory = _artifact(tmp_path / "a")
    description = json.loads((directory / CONFIG_FILE).read_text())
    del description["files"], description["checksum"]
    (directory / CONFIG_FILE).write_text(json.dumps(description))
    with pytest.warns(RanWarning, match="saved without checksums.*re-save it"):
        ReservoirModel.from_pretrained(tiny_model("llama"), directory).unwrap()
    tensors = load_file(directory / READOUT_FILE)  # and NaN weights are refused there too
    tensors[sorted(tensors)[0]][0] = float("nan")
    save_file(tensors, directory / READOUT_FILE)
    _refused(directory, "NaN or infinite")


def test_overwriting_an_artifact_removes_the_files_it_no_longer_has(tmp_path):
    directory = _artifact(tmp_path / "a", gate=True)
    _artifact(directory)  # the same directory, now without a gate head
    assert not (directory / "gate.safetensors").exists()
    ReservoirModel.from_pretrained(tiny_model("llama"), directory).unwrap()


def test_a_wrapped_base_is_refused_with_what_to_do(tmp_path):
    base = tiny_model("llama")
    model = wrap(base, RanConfig(reservoir=SMALL))
    model.save_pretrained(tmp_path / "a")
    with pytest.raises(ConfigError, match=r"already wrapped.*base = model.unwrap\(\)"):
        ReservoirModel.from_pretrained(base, tmp_path / "a")
    ReservoirModel.from_pretrained(model.unwrap(), tmp_path / "a").unwrap()  # as README does


def test_state_files_are_checked_and_never_hold_nan(tmp_path):
    model = wrap(tiny_model("llama"), RanConfig(reservoir=SMALL))
    model(torch.tensor([[5, 6, 7]]))
    path = tmp_path / "state.safetensors"
    save_state(model, path)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="changed after it was saved"):
        load_state(model, path)
    save_state(model, path)
    other_base = wrap(tiny_model("llama", seed=3), RanConfig(reservoir=SMALL))  # same reservoir, other model
    with pytest.raises(ArtifactError, match="different base model"):
        load_state(other_base, path)
    model.set_state(torch.full((1, SMALL.units), float("nan")))
    with pytest.raises(ArtifactError, match="NaN or infinite"):
        save_state(model, tmp_path / "nan.safetensors")
    assert not (tmp_path / "nan.safetensors").exists()
    model.reset_state()
    with pytest.raises(ConfigError, match="no state to save"):
        save_state(model, tmp_path / "none.safetensors")


# ----- sessions ----------------------------------------------------------------------------------------------
def _run(capsys, *args) -> tuple[int, str]:
    capsys.readouterr()
    code = main(list(args))
    return code, capsys.readouterr().err


def test_a_session_state_swapped_in_from_another_session_is_refused(tmp_path, capsys):
    model = tiny_session_model_dir(tmp_path / "model")
    script = tmp_path / "script.txt"
    script.write_text("w5 w6\n/tick 2\n")
    common = ["--model", str(model), "--sessions-dir", str(tmp_path / "sessions"), "--script", str(script),
              "--out", str(tmp_path / "out"), "--quiet", "--max-new-tokens", "2"]
    assert _run(capsys, "run", "--session", "a", "--units", "32", *common)[0] == 0
    assert _run(capsys, "run", "--session", "b", "--units", "32", "--reservoir-seed", "1", *common)[0] == 0
    assert _run(capsys, "run", "--session", "c", "--units", "32", *common)[0] == 0  # same reservoir as a
    sessions = tmp_path / "sessions"
    for source in ("b", "c"):  # another reservoir; the same reservoir, but another session
        (sessions / "a" / STATE_FILE).write_bytes((sessions / source / STATE_FILE).read_bytes())
        before = _files(sessions / "a")
        code, err = _run(capsys, "run", "--session", "a", "--resume", *common)
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert "ran run: error: session 'a': state file" in err and "copied or swapped in" in err, err
        assert ("made with reservoir" in err) and (source != "b" or "this session was made with reservoir" in err)
        assert _files(sessions / "a") == before


def test_a_session_without_a_manifest_is_bound_on_resume(tmp_path):
    model = wrap(tiny_model("llama"), RanConfig(reservoir=SMALL))
    config = SessionConfig(idle_tokens=(2,), max_new_tokens=0)
    with Session.create("old", model, config, root=tmp_path) as session:
        session.idle()
    store = SessionStore("old", tmp_path)
    store.manifest_path.unlink()  # as made before manifests existed
    with Session.open("old", model, root=tmp_path) as session:
        assert session.tick == 1
    assert store.read_manifest()["session_id"] == store.load().session_id


def test_a_nan_state_is_never_written_and_refused_on_load(tmp_path):
    model = wrap(tiny_model("llama"), RanConfig(reservoir=SMALL))
    config = SessionConfig(idle_tokens=(2,), max_new_tokens=0)
    with Session.create("n", model, config, root=tmp_path) as session:
        session.idle()
        saved = (tmp_path / "n" / STATE_FILE).read_bytes()
        session.state = torch.full_like(session.state, float("nan"))
        with pytest.raises(ArtifactError, match="NaN or infinite"):
            session.save()
        assert (tmp_path / "n" / STATE_FILE).read_bytes() == saved
    store = SessionStore("n", tmp_path)
    snapshot = store.load()
    snapshot.state = torch.full_like(snapshot.state, float("inf"))
    from ran.runtime import persistence  # write a NaN state the way a buggy writer would, checksum and all

    tensors = persistence._tensors_of(snapshot)
    with __import__("safetensors").safe_open(str(store.path), framework="pt") as handle:
        metadata = handle.metadata()
    metadata.pop("checksum")
    metadata["checksum"] = persistence._checksum(tensors, metadata)
    save_file(tensors, store.path, metadata=metadata)
    with pytest.raises(ArtifactError, match="NaN or infinite.*left untouched"):
        store.load()


def test_a_pass_that_produces_a_nan_state_keeps_nothing(tmp_path):
    model = wrap(tiny_model("llama"), RanConfig(reservoir=SMALL))
    with Session.create("p", model, SessionConfig(idle_tokens=(2,), max_new_tokens=0), root=tmp_path) as session:
        session.idle()
        before = (session.tick, session.state.clone(), list(session.context))
        saved = (tmp_path / "p" / STATE_FILE).read_bytes()
        with torch.no_grad():
            model.reservoir.w_in.fill_(float("nan"))
        with pytest.raises(ArtifactError, match="NaN or infinite state.*stays at tick 1"):
            session.idle()
        assert (session.tick, list(session.context)) == (before[0], before[2])
        assert torch.equal(session.state, before[1]) and (tmp_path / "p" / STATE_FILE).read_bytes() == saved


def test_the_reservoir_cap_says_what_it_would_cost(monkeypatch):
    with pytest.raises(ConfigError, match=r"units must be at most 65,536, got 100,000,000.*PiB"):
        check_reservoir_size(100_000_000, 0.1)
    monkeypatch.setattr("ran.limits.physical_memory", lambda: 2**28)  # a machine with 256 MiB
    with pytest.raises(ConfigError, match=r"needs about .* MiB, more than this machine's 256.0 MiB"):
        ReservoirConfig(units=16384)
    check_reservoir_size(512, 0.1)
