"""The always-alive runtime: sessions, streaming with the cache, the gate, persistence, bounded idling."""

import multiprocessing
import os
import random
import resource
import signal
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from numerics import TINY_WIDTH, assert_float32_close, pass_depth
from tiny_models import VOCAB, tiny_model, tiny_session_model_dir

from ran.errors import ArtifactError, ConfigError
from ran.model import RanConfig, ReservoirModel, wrap
from ran.reservoir import ReservoirConfig
from ran.runtime import ContextPolicy, EntropyGate, Session, SessionConfig, SessionStore, StateGate, load_gate
from ran.runtime.persistence import STATE_FILE, TEMP_MARK

SMALL = ReservoirConfig(units=64, input_scaling=0.5)
IDLE = (5, 6)  # two tokens per idle tick
NEVER = EntropyGate(0.0)  # entropy is never <= 0 on a random model: the gate keeps silent
ALWAYS = EntropyGate(100.0)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run fastest on one thread; two threads on a shared 2-core machine contend badly."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _model(architecture="llama", mode="kv", seed=0, reservoir=SMALL, attn="sdpa") -> ReservoirModel:
    model = wrap(tiny_model(architecture, seed, attn), RanConfig(mode=mode, reservoir=reservoir))
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in model.injector.parameters():  # a nonzero readout, so the state changes the model
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    return model


def _config(**changes) -> SessionConfig:
    values = dict(idle_tokens=IDLE, max_new_tokens=3, policy=ContextPolicy(sinks=4, window=40))
    values.update(changes)
    return SessionConfig(**values)


def _rss_mib() -> float:
    with open("/proc/self/statm") as stream:
        pages = int(stream.read().split()[1])
    return pages * resource.getpagesize() / 2**20


# ----- passes and streaming -------------------------------------------------------------------------
@pytest.mark.parametrize("architecture, mode", [("llama", "kv"), ("gpt2", "prefix"), ("qwen2", "additive")])
def test_streaming_equals_generate_and_costs_one_call_per_token(architecture, mode):
    model = _model(architecture, mode)
    session = Session(model, _config(max_new_tokens=32), gate=NEVER)
    for _ in range(3):
        session.idle()
    calls, positions = [], []

    def count(module, args, kwargs):
        tokens = kwargs.get("input_ids") if kwargs.get("input_ids") is not None else kwargs["inputs_embeds"]
        calls.append(1)
        positions.append(tokens.shape[1])

    handle = model.base.register_forward_pre_hook(count, with_kwargs=True)
    prompt = [7, 8, 9, 10]
    for n in (4, 16, 32):
        state, context = session.state.clone(), session.context + prompt
        ids = torch.tensor([context])  # an explicit mask: generate() would mask any pad-id token it sees
        reference = model.generate(ids, attention_mask=torch.ones_like(ids), state=state, max_new_tokens=n,
                                   do_sample=False, eos_token_id=None)  # one pass, same state, no stop token
        reference_state = model.get_state()
        calls.clear()
        positions.clear()
        streamed = []
        session.with_config(max_new_tokens=n)
        record = session.prompt(prompt, on_token=streamed.append)
        assert streamed == record.tokens == reference[0, len(context):].tolist()
        torch.testing.assert_close(session.state, reference_state, atol=1e-6, rtol=0)
        assert len(calls) == record.model_calls == n  # the prefill gives token 1, one call per further token
        n_prefix = model.injector.n_prefix_positions
        assert positions[0] == n_prefix + record.prefill_length and positions[1:] == [1] * (n - 1)
    handle.remove()


def test_prompted_and_idle_passes_each_tick_once():
    model = _model()
    session = Session(model, _config(), gate=NEVER)
    before = session.state.clone()
    session.idle()
    expected = model(torch.tensor([list(IDLE)]), state=before).state  # one forward = one tick
    torch.testing.assert_close(session.state, expected, atol=1e-6, rtol=0)
    before, context = session.state.clone(), session.context + [9, 10]
    record = session.prompt([9, 10])
    expected = model(torch.tensor([context]), state=before).state
    torch.testing.assert_close(session.state, expected, atol=1e-6, rtol=0)
    assert session.tick == record.tick == 2 and record.kind == "prompt" and len(record.tokens) == 3


def test_gates_decide_emission():
    model = _model()
    silent = Session(model, _config(), gate=NEVER)
    record = silent.idle()
    assert not record.emitted and record.tokens == [] and silent.context == list(IDLE)
    talking = Session(model, _config(), gate=ALWAYS)
    record = talking.idle()
    assert record.emitted and len(record.tokens) == 3 and talking.context == list(IDLE) + record.tokens
    # A stop token as the most likely next token keeps the entropy gate silent.
    logits = torch.zeros(VOCAB)
    logits[11] = 50.0
    assert ALWAYS.decide(None, logits).emit and not ALWAYS.decide(None, logits, stop_tokens=(11,)).emit
    # A trained state gate reads the state after the pass: p = sigmoid(w . r + b).
    state = torch.randn(1, SMALL.units)
    assert StateGate(state[0], bias=0.0).decide(state, logits).emit
    assert not StateGate(-state[0], bias=0.0).decide(state, logits).emit
    # A prompted pass always replies, unless the gate is asked to decide there too (gate_prompted).
    assert Session(model, _config(), gate=NEVER).prompt([9, 10]).emitted
    held = Session(model, replace(_config(), gate_prompted=True), gate=NEVER).prompt([9, 10])
    assert not held.emitted and held.tokens == []


def test_state_gate_is_stored_in_the_artifact_and_checked(tmp_path):
    model = _model()
    assert isinstance(load_gate(tmp_path, model.reservoir), EntropyGate)  # no gate file: the fallback
    weight = torch.randn(SMALL.units)
    fingerprint = model.reservoir.fingerprint
    StateGate(weight, bias=0.25, threshold=0.7, reservoir_fingerprint=fingerprint).save(tmp_path)
    gate = load_gate(tmp_path, model.reservoir)
    assert isinstance(gate, StateGate) and gate.threshold == 0.7 and gate.bias == 0.25
    assert torch.equal(gate.weight, weight)
    other = _model(reservoir=ReservoirConfig(units=64, seed=3))
    with pytest.raises(ArtifactError, match="different reservoir"):
        load_gate(tmp_path, other.reservoir)


# ----- persistence ---------------------------------------------------------------------------------------
def test_reopen_resumes_exactly(tmp_path):
    model = _model()
    with Session.create("alpha", model, _config(), gate=ALWAYS, root=tmp_path) as session:
        for _ in range(3):
            session.idle()
        session.prompt([9, 10, 11])
        saved = session.snapshot()
    with Session.open("alpha", model, gate=ALWAYS, root=tmp_path) as session:
        assert session.tick == 4 and torch.equal(session.state, saved.state)
        assert session.context == saved.context and session.last == saved.last and session.config == _config()
        for _ in range(3):
            session.idle()
        resumed = session.snapshot()
    straight = Session(model, _config(), gate=ALWAYS)
    for _ in range(3):
        straight.idle()
    straight.prompt([9, 10, 11])
    for _ in range(3):
        straight.idle()
    assert torch.equal(straight.state, resumed.state) and straight.context == resumed.context


def test_bad_sessions_are_refused_and_left_untouched(tmp_path):
    model = _model()
    with pytest.raises(ArtifactError, match="no session 'ghost'.*no sessions there yet"):
        Session.open("ghost", model, root=tmp_path)
    with Session.create("alpha", model, _config(), root=tmp_path) as session:
        session.idle()
        with pytest.raises(ArtifactError, match="in use by another process"):
            Session.open("alpha", model, root=tmp_path)
    with pytest.raises(ArtifactError, match="already exists"):
        Session.create("alpha", model, _config(), root=tmp_path)
    with pytest.raises(ConfigError, match="invalid session name"):
        SessionStore("../escape", tmp_path)
    path = tmp_path / "alpha" / STATE_FILE
    original = path.read_bytes()
    cases = [
        (_model(seed=1), "another base model"),
        (_model(reservoir=ReservoirConfig(units=64, seed=7)), "another reservoir"),
        (_model(mode="prefix"), "another RAN config"),
    ]
    other_readout = _model()
    with torch.no_grad():
        other_readout.injector.key_readout.weight.add_(1.0)
    cases.append((other_readout, "another readout"))
    for other, message in cases:
        with pytest.raises(ArtifactError, match=message) as caught:
            Session.open("alpha", other, root=tmp_path)
        assert "\n" not in str(caught.value)
        assert path.read_bytes() == original
    for damage, message in [(lambda b: b[: len(b) // 2], "truncated or corrupt"),
                            (lambda b: b[:-1] + bytes([b[-1] ^ 1]), "checksum mismatch"),
                            (lambda b: b"", "truncated or corrupt")]:
        path.write_bytes(damage(original))
        broken = path.read_bytes()
        with pytest.raises(ArtifactError, match=message) as caught:
            Session.open("alpha", model, root=tmp_path)
        assert "\n" not in str(caught.value) and "left untouched" in str(caught.value)
        assert path.read_bytes() == broken
    path.write_bytes(original)
    with pytest.raises(ArtifactError, match="no session 'ghost'.*existing sessions: alpha"):
        Session.open("ghost", model, root=tmp_path)


def test_a_session_made_before_a_config_field_existed_resumes_and_another_config_is_refused(tmp_path):
    from ran.runtime.persistence import check_identity
    from ran.runtime.session import model_identity

    identity = model_identity(_model())
    older = {**identity, "ran_config": {k: v for k, v in identity["ran_config"].items() if k != "place_count"}}
    check_identity("alpha", older, identity)  # the field's default is what the older release did
    other = {**identity, "ran_config": {**older["ran_config"], "n_slots": identity["ran_config"]["n_slots"] + 1}}
    for stored in (other, {**identity, "ran_config": {"colour": "blue"}}, {**identity, "ran_config": None}):
        with pytest.raises(ArtifactError, match="another RAN config"):
            check_identity("alpha", stored, identity)


def _kill_writer(root, name, connection):
    """The writer: resume (or start) the session and tick forever, reporting each completed pass."""
    torch.set_num_threads(1)
    model = _model()
    store = SessionStore(name, root)
    if store.exists():
        session = Session.open(name, model, gate=ALWAYS, root=root)
    else:
        session = Session.create(name, model, _config(), gate=ALWAYS, root=root)
    connection.send(("opened", session.tick))
    while True:
        connection.send(("saved", session.idle().tick))  # idle() returns after the atomic save


def test_sigkill_while_writing_never_tears_the_session(tmp_path):
    rounds = int(os.environ.get("RAN_KILL_ROUNDS", "30"))
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["torch", "transformers", "ran.runtime", "tiny_models", "test_runtime"])
    rng = random.Random(0)
    model = _model()
    reference = Session(model, _config(), gate=ALWAYS)  # the same passes, in memory, never killed
    states, contexts = [reference.state.clone()], [list(reference.context)]
    last_reported, mid_write, ticks_seen = 0, 0, []
    for _ in range(rounds):
        receiver, sender = context.Pipe(duplex=False)
        writer = context.Process(target=_kill_writer, args=(str(tmp_path), "victim", sender))
        writer.start()
        sender.close()
        kind, opened_at = receiver.recv()
        assert kind == "opened" and opened_at >= last_reported  # the child itself resumed the last state
        assert receiver.poll(60)
        time.sleep(rng.uniform(0.0, 0.03))
        os.kill(writer.pid, signal.SIGKILL)
        writer.join()
        while receiver.poll():
            try:
                last_reported = receiver.recv()[1]
            except EOFError:
                break
        receiver.close()
        mid_write += any((tmp_path / "victim").glob(f".{STATE_FILE}{TEMP_MARK}*"))
        with Session.open("victim", model, gate=ALWAYS, root=tmp_path) as session:  # always loads
            # The last completed pass: the one reported, or one more whose save finished before its report.
            assert last_reported <= session.tick <= last_reported + 1
            while len(states) <= session.tick:
                reference.idle()
                states.append(reference.state.clone())
                contexts.append(list(reference.context))
            torch.testing.assert_close(session.state, states[session.tick], atol=1e-5, rtol=0)
            assert session.context == contexts[session.tick]
            last_reported = session.tick
            ticks_seen.append(session.tick)
    print(f"\n{rounds} SIGKILLs: final tick {ticks_seen[-1]}, {mid_write} landed while a state file was "
          "being written (temporary file left behind); every reopen loaded the last completed pass")
    assert ticks_seen[-1] >= rounds  # every round completed at least the one pass it waited for


# ----- bounded idling ------------------------------------------------------------------------------
def _idle_run(mode: str, ticks: int, policy: ContextPolicy, gate=None, attn="sdpa"):
    """Tick idly; check every pass that the reservoir's entries were in place and not in the cache."""
    model = _model(mode=mode, attn=attn)
    gate = gate or StateGate(torch.randn(SMALL.units, generator=torch.Generator().manual_seed(2)), bias=0.0)
    session = Session(model, _config(policy=policy), gate=gate)
    layer, n_slots = model.config.layer, model.config.n_slots
    seen = {"prefills": 0}

    def check_prefill(module, args, kwargs, output):
        if kwargs.get("cache") is not None:  # a decode step
            return
        seen["prefills"] += 1
        length = len(session.context)
        if mode == "prefix":  # the prefix pseudo-tokens were prepended: the state's own entries
            embeds = kwargs["inputs_embeds"]
            assert embeds.shape[1] == n_slots + length
            torch.testing.assert_close(embeds[0, :n_slots], model.injector.prefix_embeddings()[0])
            assert output.cache.layers[0].keys.shape[2] == n_slots + length
        else:  # the kv slots were live at layer L and never entered the cache
            assert model.injector.slots.keys.shape[2] == n_slots
            assert output.cache.layers[layer].keys.shape[2] == length

    handle = model.base.register_forward_hook(check_prefill, with_kwargs=True)
    lengths, emitted, rss = [], 0, {}
    first_tokens = None
    for tick in range(1, ticks + 1):
        record = session.idle()
        lengths.append(record.context_length)
        emitted += record.emitted
        if first_tokens is None and len(session.context) >= 4:
            first_tokens = session.context[:4]
        if policy.budget is not None and len(session.context) >= 4:
            assert session.context[:4] == first_tokens  # the attention sinks survive every eviction
        if tick == min(200, ticks):
            rss["warm"] = _rss_mib()
    rss["end"] = _rss_mib()
    handle.remove()
    assert seen["prefills"] == ticks
    return session, lengths, emitted, rss


@pytest.mark.parametrize("mode", ["kv", "prefix"])
def test_idle_ticks_stay_within_budget_and_keep_reservoir_entries(mode):
    _check_bounded_idling(mode, int(os.environ.get("RAN_IDLE_TICKS", "1000")))


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["kv", "prefix"])
def test_ten_thousand_idle_ticks_stay_bounded(mode):
    _check_bounded_idling(mode, 10_000)


def _check_bounded_idling(mode: str, ticks: int) -> None:
    policy = ContextPolicy(sinks=4, window=40)
    started = time.perf_counter()
    session, lengths, emitted, rss = _idle_run(mode, ticks, policy)
    seconds = time.perf_counter() - started
    assert max(lengths) <= policy.budget and lengths[-1] == policy.budget
    assert session.tick == ticks and emitted > 0  # replies pass through eviction too
    assert rss["end"] - rss["warm"] < 30, rss
    print(f"\n{mode}: {ticks} idle ticks in {seconds:.1f}s, context max {max(lengths)} "
          f"(budget {policy.budget}), final {lengths[-1]}, gate spoke on {emitted}; "
          f"RSS {rss['warm']:.1f} MiB at tick "
          f"{min(200, ticks)} -> {rss['end']:.1f} MiB at the end")


def test_without_eviction_the_context_grows_linearly():
    ticks = 300
    session, lengths, emitted, rss = _idle_run("kv", ticks, ContextPolicy(kind="none"), gate=NEVER)
    assert emitted == 0
    assert lengths == [len(IDLE) * t for t in range(1, ticks + 1)]  # exactly linear: nothing is dropped
    bounded, bounded_lengths, _, _ = _idle_run("kv", ticks, ContextPolicy(sinks=4, window=40), gate=NEVER)
    assert max(bounded_lengths) == 44 and lengths[-1] == 600
    print(f"\nno eviction: context {lengths[99]} / {lengths[199]} / {lengths[-1]} tokens after "
          f"100 / 200 / 300 idle ticks; with sinks 4 + window 40: {bounded_lengths[-1]}")


def test_h2o_policy_keeps_the_most_attended_tokens():
    policy = ContextPolicy(kind="h2o", sinks=2, window=8, heavy=6)
    scores = [0.0] * 30
    for index, value in {5: 9.0, 11: 8.0, 17: 7.0, 3: 6.0, 14: 5.0, 8: 4.0, 9: 0.5}.items():
        scores[index] = value
    assert policy.keep(30, scores) == [0, 1, 3, 5, 8, 11, 14, 17] + list(range(22, 30))
    with pytest.raises(ConfigError, match="needs attention weights"):
        Session(_model(), _config(policy=policy))
    session, lengths, _, _ = _idle_run("kv", 60, policy, gate=NEVER, attn="eager")
    assert max(lengths) <= policy.budget and len(session.scores) == len(session.context)
    assert all(score > 0 for score in session.scores)  # every kept token has been attended to


def test_policy_and_config_validation():
    with pytest.raises(ConfigError, match="unknown context policy 'lru'"):
        ContextPolicy(kind="lru")
    with pytest.raises(ConfigError, match="heavy=3 only applies to the h2o policy"):
        ContextPolicy(heavy=3)
    with pytest.raises(ConfigError, match="idle_tokens must hold at least one token"):
        SessionConfig(idle_tokens=())
    assert ContextPolicy(sinks=4, window=12).keep(10) == list(range(10))
    assert ContextPolicy(sinks=2, window=3).keep(10) == [0, 1, 7, 8, 9]
    assert ContextPolicy(kind="none").budget is None


def test_reset_wipes_state_and_context_without_a_tick(tmp_path):
    model = _model()
    with Session.create("beta", model, _config(), gate=NEVER, root=tmp_path) as session:
        session.idle()
        session.reset("state")
        assert session.tick == 1 and session.state.abs().sum() == 0 and session.context == list(IDLE)
        session.reset()
        assert session.context == []
    with Session.open("beta", model, root=tmp_path) as session:
        assert session.tick == 1 and session.state.abs().sum() == 0 and session.context == []


def test_session_files_contain_no_pickle(tmp_path):
    model = _model()
    with Session.create("gamma", model, _config(), root=tmp_path) as session:
        session.idle()
    data = (Path(tmp_path) / "gamma" / STATE_FILE).read_bytes()
    assert b"\x80\x04" not in data[:8] and data[8:9] == b"{"  # a safetensors JSON header, not a pickle


# ----- ran chat / ran run ----------------------------------------------------------------------------------
_tiny_model_dir = tiny_session_model_dir


def _ran(capsys, *args: str) -> tuple[int, str, str]:
    from ran.cli import main

    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("script", sorted(Path(__file__).parents[1].glob("docs/demo/*.txt")), ids=lambda p: p.name)
def test_every_demo_script_parses(script):
    from ran.cli.run import read_script

    entries = read_script(str(script))
    assert entries and {command for _, command, _ in entries} >= {"input"}  # each script says something


def test_ran_run_resumes_and_refuses_bad_sessions(tmp_path, capsys):
    import json

    model_a, model_b = _tiny_model_dir(tmp_path / "a", 0), _tiny_model_dir(tmp_path / "b", 1)
    script = tmp_path / "script.txt"
    script.write_text("# a prompt, idle ticks, the state\nw5 w6 w7\n/tick 3\n/state\n")
    common = ["--sessions-dir", str(tmp_path / "sessions"), "--script", str(script), "--quiet"]
    first = ["run", "--session", "s", "--model", str(model_a), "--units", "64", "--window", "20",
             "--max-new-tokens", "4", "--out", str(tmp_path / "out1"), *common]
    code, out, err = _ran(capsys, *first)
    assert code == 0, err
    transcript = json.loads(next((tmp_path / "out1").glob("run-s-*.json")).read_text())
    assert [e["kind"] for e in transcript["events"]] == ["prompt", "idle", "idle", "idle", "state"]
    assert transcript["end"]["tick"] == 4 and list((tmp_path / "out1").glob("run-s-*.png"))
    assert transcript["events"][0]["model_calls"] <= 5
    assert transcript["session_config"]["policy"]["window"] == 20
    assert transcript["session_config"]["gate_prompted"] is False  # every turn gets a reply unless asked

    resume = ["run", "--session", "s", "--resume"]
    code, out, err = _ran(capsys, *resume, "--out", str(tmp_path / "out2"), *common)
    assert code == 0, err
    resumed = json.loads(next((tmp_path / "out2").glob("run-s-*.json")).read_text())
    assert resumed["start"] == transcript["end"] and resumed["end"]["tick"] == 8  # the same state, continued
    assert resumed["model"] == str(model_a) and resumed["session_config"] == transcript["session_config"]

    state_file = tmp_path / "sessions" / "s" / STATE_FILE
    original = state_file.read_bytes()
    refusals = [
        (["--session", "nope", "--resume"], "no session 'nope'"),
        (["--session", "s", "--resume", "--model", str(model_b)], "another base model"),
        (["--session", "s", "--resume", "--reservoir-seed", "9"], "another reservoir"),
        (["--session", "s", "--model", str(model_a), "--units", "64"], "already exists"),
    ]
    for args, message in refusals:
        code, out, err = _ran(capsys, "run", *args, "--out", str(tmp_path / "bad"), *common)
        lines = [line for line in err.splitlines() if "error" in line]  # (progress bars also go to stderr)
        assert code == 2 and len(lines) == 1 and message in lines[0], err
        assert state_file.read_bytes() == original and not (tmp_path / "sessions" / "nope").exists()
    state_file.write_bytes(original[: len(original) - 100])
    code, out, err = _ran(capsys, *resume, "--out", str(tmp_path / "bad"), *common)
    lines = [line for line in err.splitlines() if "error" in line]
    assert code == 2 and len(lines) == 1 and "truncated or corrupt" in lines[0], err
    assert state_file.read_bytes() == original[: len(original) - 100]  # left untouched
    assert not (tmp_path / "bad").exists()  # no transcript for a refused run
    state_file.write_bytes(original)
    code, out, err = _ran(capsys, *resume, "--gate-prompted", "--out", str(tmp_path / "out3"), *common)
    assert code == 0, err
    held = json.loads(next((tmp_path / "out3").glob("run-s-*.json")).read_text())
    assert held["session_config"]["gate_prompted"] is True


def test_ran_chat_streams_ticks_and_resumes(tmp_path, capsys, monkeypatch):
    import io

    model = _tiny_model_dir(tmp_path / "a", 0)
    common = ["--sessions-dir", str(tmp_path / "sessions")]
    monkeypatch.setattr("sys.stdin", io.StringIO("w9 w10\n/tick 2\n/state\n/bogus\n/quit\n"))
    code, out, err = _ran(capsys, "chat", "--session", "c", "--model", str(model), "--units", "64",
                          "--max-new-tokens", "3", *common)
    assert code == 0, err
    assert "idle tick 2:" in out and "idle tick 3:" in out and "error: unknown command /bogus" in out
    before = [line[line.index("tick 3 |"):] for line in out.splitlines() if "tick 3 |" in line]
    assert len(before) == 1  # the /state line (after the "you> " prompt)
    monkeypatch.setattr("sys.stdin", io.StringIO("/state\n"))
    code, out, err = _ran(capsys, "chat", "--session", "c", "--resume", *common)
    assert code == 0, err
    assert "resumed at tick 3" in out and out.count(before[0]) == 2  # banner + /state: same state, same hash


# ----- one definition of a pass: the session reads what training renders ---------------------------
@pytest.mark.parametrize("kind, tick", [("text", "text"), ("chat", "text"), ("chat", "turn")])
def test_a_session_reads_exactly_the_passes_training_renders(kind, tick):
    from tiny_models import tiny_chat_tokenizer, tiny_tokenizer

    from ran.episodes import Episode, Pass, render
    from ran.passes import PassFormat, Renderer
    from ran.training import run_episodes

    tokenizer = tiny_chat_tokenizer() if kind == "chat" else tiny_tokenizer()
    renderer = Renderer(PassFormat(kind, idle_text="w9", tick=tick), tokenizer)
    model = _model()
    prefills = []
    handle = model.base.register_forward_pre_hook(
        lambda module, args, kwargs: prefills.append(kwargs["input_ids"][0].tolist())
        if kwargs.get("cache") is None else None, with_kwargs=True)
    session = Session(model, SessionConfig.for_renderer(renderer, max_new_tokens=2), gate=NEVER)
    stored = session.prompt(renderer.turn("w10 w11"))  # replies 2 tokens; the idle ticks stay silent
    session.idle()
    session.idle()
    session.reset("context")
    session.idle()  # a tick on a wiped context, which the next turn continues
    session.prompt(renderer.turn("w20"))
    handle.remove()
    reply = tokenizer.decode(stored.tokens)
    episode = Episode((Pass("w10 w11", reply), Pass.tick(), Pass.tick(), Pass.tick(wipe=True), Pass("w20", wipe=False)))
    rendered = render(episode, renderer)
    assert prefills == [list(p.prompt) for p in rendered]  # the same tokens, read at the same last position
    idle = (9,) if tick == "text" else tuple(renderer.turn(""))  # the idle text, or an empty user turn
    assert rendered[3].prompt == idle  # the wiped tick reads the tick alone
    if kind == "chat":
        closing = (*renderer.reply_end, *idle)  # the reply was closed with <|im_end|>, then the tick
        assert renderer.reply_end and rendered[1].prompt[-len(closing):] == closing
    if tick == "turn":  # the tick ends, as a turn does, in the assistant's header, past the first position
        assert len(idle) > 1 and idle[-1] == renderer.turn("w20")[-1]
    with torch.no_grad():
        trained_view = run_episodes(model, [rendered], keep=True)
    # The trainer, teacher-forced on the session's reply, predicts that reply greedily: the same tokens.
    reply_logits = trained_view.scored[0][0].logits  # (target length, vocab)
    assert reply_logits.argmax(-1)[:len(stored.tokens)].tolist() == stored.tokens
    # The same state up to float32 rounding (another sequence length, so other kernels): 5 passes read at
    # layer 2 of the tiny Llama (3 layers deep), 64 reservoir units.
    assert_float32_close(session.state, trained_view.final_state, TINY_WIDTH, pass_depth(layers=3, passes=5))


def test_a_new_sessions_model_takes_the_read_write_recall_drive_and_places_flags():
    """Without an artifact, the flags given build the session's model (each one, not only some)."""
    import argparse

    from ran.cli.sessions import _build_model, add_session_arguments

    parser = argparse.ArgumentParser()
    add_session_arguments(parser)
    args = parser.parse_args(["--session", "s", "--summary", "gated", "--write", "switched", "--recall", "switched",
                              "--drive", "token", "--slots", "4", "--units", "64"])
    model = _build_model(args, tiny_model("llama"), None, None)
    try:
        config = model.config
        assert (config.summary, config.write, config.recall, config.drive, config.n_slots, config.reservoir.units) == \
            ("gated", "switched", "switched", "token", 4, 64)
        assert model.recall_gate is not None
    finally:
        model.unwrap()
    ordered = _build_model(parser.parse_args(["--session", "s", "--summary", "gated", "--read-places", "3",
                                              "--read-from", "embeddings", "--units", "64", "--slots", "6",
                                              "--slot-order", "reply"]), tiny_model("llama"), None, None)
    try:
        assert ordered.config.read_places == 3 and ordered.reservoir.input_dim == 3 * ordered.geometry.hidden_size
        chosen = ordered.config
        assert (chosen.read_from, chosen.n_slots, chosen.slot_order) == ("embeddings", 6, "reply")
    finally:
        ordered.unwrap()
    stored = _build_model(parser.parse_args(["--session", "s"]), tiny_model("llama"), None, config.to_dict())
    try:
        assert (stored.config.write, stored.config.recall, stored.config.drive) == ("switched", "switched", "token")
    finally:
        stored.unwrap()
