"""``ran serve`` through its HTTP API (no browser): a real server on a free loopback port, tiny models."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="ran serve needs the serve extra: pip install -e '.[serve]'")
pytest.importorskip("httpx", reason="the API tests need httpx (the dev extra)")

from serve_helpers import Events, Served, kind  # noqa: E402
from tiny_models import tiny_session_model_dir  # noqa: E402

from ran.runtime import SessionStore  # noqa: E402
from ran.runtime.persistence import STATE_FILE  # noqa: E402

SETTINGS = ("--units", "64", "--max-new-tokens", "6", "--window", "40")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return tiny_session_model_dir(tmp_path_factory.mktemp("model"), 0)


@pytest.fixture
def served(model_dir, tmp_path):
    server = Served("--model", str(model_dir), *SETTINGS, "--session", "s",
                    "--sessions-dir", str(tmp_path / "sessions"))
    events = Events(server.url)
    events.wait(kind("snapshot"))
    yield server, events
    events.close()
    server.stop()


def _state_file(served_server: Served, name: str = "s") -> Path:
    return Path(served_server.host.root) / name / STATE_FILE


# ----- the same session as ran chat -------------------------------------------------------------------
def test_the_page_drives_the_session_ran_run_drives(served, model_dir, tmp_path, capsys):
    """A message, idle ticks, both resets and another message through the API give the replies and states
    that ``ran run`` gives for the same script; the reply streams token by token; the stored session resumes."""
    server, events = served
    response = server.post("/api/message", {"text": "w5 w6 w7"})
    assert response.status_code == 200, response.text
    got = events.wait(kind("busy", busy=None))
    names = [e["event"] for e in got]
    assert names[:2] == ["busy", "pass_start"] and names[-2:] == ["pass_end", "busy"]
    tokens = [e["text"] for e in got if e["event"] == "token"]
    end = got[-2]
    assert len(tokens) == end["point"]["reply_tokens"] >= 2 and "".join(tokens) == end["reply"]
    first = end["point"]
    assert first["tick"] == 1 and first["kind"] == "prompt" and first["context_length"] > 0
    assert first["state_change"] == pytest.approx(first["state_norm"], rel=1e-5)  # from the zero state

    steps = [("/api/tick", {"count": 2}), ("/api/reset", {"what": "context"}), ("/api/reset", {"what": "state"}),
             ("/api/message", {"text": "w9"})]
    for path, body in steps:
        assert server.post(path, body).status_code == 200
    points = [e["point"] for e in events.wait(lambda e: e["event"] == "pass_end" and e["point"]["tick"] == 4)
              if e["event"] == "pass_end"]
    page_passes = [first, *points]
    assert [p["tick"] for p in page_passes] == [1, 2, 3, 4]
    status = server.client.get("/api/state").json()["status"]

    script = tmp_path / "script.txt"
    script.write_text("w5 w6 w7\n/tick 2\n/reset context\n/reset state\nw9\n")
    from ran.cli import main

    sessions = str(server.host.root)
    code = main(["run", "--session", "cli", "--model", str(model_dir), *SETTINGS, "--sessions-dir", sessions,
                 "--script", str(script), "--out", str(tmp_path / "out"), "--quiet"])
    assert code == 0
    transcript = json.loads(next((tmp_path / "out").glob("run-cli-*.json")).read_text())
    cli_passes = [e for e in transcript["events"] if e["kind"] in ("prompt", "idle")]
    assert [e["reply"] for e in cli_passes] == [e["reply"] for e in events.seen if e["event"] == "pass_end"]
    for page_point, cli_pass in zip(page_passes, cli_passes, strict=True):
        assert page_point["state_norm"] == pytest.approx(cli_pass["state_norm"], rel=1e-5)
        assert page_point["context_length"] == cli_pass["context_length"]
        assert page_point["gate_value"] == pytest.approx(cli_pass["gate"]["value"], rel=1e-5)
    assert status.split(" | state sha256 ")[1] == transcript["end"]["digest"]  # bit-identical state

    # sessions go both ways: the page resumes the one ran run made, ran run resumes the page's
    assert server.post("/api/session", {"action": "resume", "name": "cli"}).status_code == 200
    snapshot = events.wait(kind("snapshot"))[-1]
    assert snapshot["session"] == "cli" and snapshot["status"] == status  # same tick, state, gate, context
    server.stop()
    script.write_text("/state\n")
    code = main(["run", "--session", "s", "--resume", "--sessions-dir", sessions, "--script", str(script),
                 "--out", str(tmp_path / "out2"), "--quiet"])
    assert code == 0
    resumed = json.loads(next((tmp_path / "out2").glob("run-s-*.json")).read_text())
    assert resumed["start"]["tick"] == 4 and resumed["start"]["digest"] == transcript["end"]["digest"]
    capsys.readouterr()


def test_idle_ticks_resets_and_stop(served):
    server, events = served
    assert server.post("/api/tick", {"count": 3}).json()["tick"] == 3
    got = events.wait(kind("busy", busy=None))
    idle = [e for e in got if e["event"] == "pass_end"]
    assert [e["point"]["kind"] for e in idle] == ["idle"] * 3
    for event in idle:  # silent ticks are reported as such, with the gate's value
        point = event["point"]
        assert point["gate_kind"] == "entropy" and point["gate_threshold"] == 2.0
        assert point["emitted"] == (point["gate_value"] <= 2.0 and not point["stop_token"])
        if not point["emitted"]:
            assert event["reply"] == "" and point["reply_tokens"] == 0
    norms = [e["point"]["state_norm"] for e in idle]
    changes = [e["point"]["state_change"] for e in idle]
    for previous, norm, change in zip([0.0, *norms], norms, changes, strict=False):
        assert abs(norm - previous) - 1e-4 <= change <= norm + previous + 1e-4  # ||r(t) - r(t-1)||, triangle

    assert server.post("/api/reset", {"what": "context"}).status_code == 200
    reset = events.wait(kind("reset"))[-1]
    assert reset["what"] == "context" and reset["tick"] == 3 and "context 0 tokens" in reset["status"]
    assert f"state norm {norms[-1]:.4f}" in reset["status"]  # the state survives a context reset
    assert server.post("/api/reset", {"what": "state"}).status_code == 200
    reset = events.wait(kind("reset"))[-1]
    assert "state norm 0.0000" in reset["status"] and reset["tick"] == 3  # a reset is not a tick
    stored = SessionStore("s", server.host.root).load()
    assert stored.tick == 3 and float(stored.state.norm()) == 0 and stored.context == []

    # the next pass's change is measured from the wiped state
    server.post("/api/tick", {"count": 1})
    point = events.wait(kind("pass_end"))[-1]["point"]
    assert point["state_change"] == pytest.approx(point["state_norm"], rel=1e-5)
    assert server.post("/api/stop", {}).json() == {"stopped": False, "message": "nothing is running"}


def test_save_new_and_resume_named_sessions(served):
    server, events = served
    server.post("/api/message", {"text": "w5 w6"})
    before = server.client.get("/api/state").json()
    assert server.post("/api/save", {}).status_code == 200
    saved = events.wait(kind("saved"))[-1]
    assert saved["tick"] == 1 and saved["path"] == str(_state_file(server))

    assert server.post("/api/session", {"action": "new", "name": "second"}).status_code == 200
    snapshot = events.wait(kind("snapshot"))[-1]
    assert snapshot["session"] == "second" and snapshot["tick"] == 0 and snapshot["points"] == []
    assert snapshot["sessions"] == ["s", "second"]
    store = SessionStore("s", server.host.root)
    store.lock()  # the server let go of the first session's lock
    store.unlock()
    server.post("/api/tick", {"count": 2})

    assert server.post("/api/session", {"action": "resume", "name": "s"}).status_code == 200
    snapshot = events.wait(kind("snapshot"))[-1]
    assert snapshot["session"] == "s" and snapshot["status"] == before["status"]  # the same state, same hash
    assert [p["tick"] for p in snapshot["points"]] == [1]  # the points this server plotted for it
    assert server.post("/api/session", {"action": "resume", "name": "second"}).status_code == 200
    assert events.wait(kind("snapshot"))[-1]["tick"] == 2

    refusals = [
        ({"action": "resume", "name": "second"}, 400, "already open here"),
        ({"action": "resume", "name": "nope"}, 409, "no session 'nope'"),
        ({"action": "new", "name": "s"}, 409, "already exists"),
        ({"action": "rename", "name": "x"}, 400, "unknown session action"),
    ]
    for body, status, message in refusals:
        response = server.post("/api/session", body)
        assert response.status_code == status and message in response.json()["error"], response.text
    assert server.client.get("/api/state").json()["session"] == "second"


# ----- refusals: each one a clear message, nothing lost ----------------------------------------------------
BAD_NAMES = ["../evil", "a/b", "/etc/passwd", "..", ".hidden", "", "x" * 101, "name with space", 7, None]


def test_bad_input_is_refused_and_nothing_is_lost(served, tmp_path):
    server, events = served
    server.post("/api/message", {"text": "w5 w6"})
    state_file = _state_file(server)
    original = state_file.read_bytes()
    root = Path(server.host.root)
    listing = sorted(p.name for p in root.iterdir())

    def refused(response, status: int, message: str) -> None:
        assert response.status_code == status, response.text
        error = response.json()["error"]
        assert message in error and "\n" not in error

    for name in BAD_NAMES:
        for action in ("new", "resume"):
            refused(server.post("/api/session", {"action": action, "name": name}), 400, "invalid session name")
    limit = server.host.limits.max_input_chars
    refused(server.post("/api/message", {"text": "w5 " * (limit // 3 + 1)}), 413, f"over the limit of {limit}")
    refused(server.post("/api/message", {"text": "   "}), 400, "the message is empty")
    refused(server.post("/api/message", {"text": ["w5"]}), 400, "the message is empty")
    for count in (0, -1, 1001, "3", True, 2.5):
        refused(server.post("/api/tick", {"count": count}), 400, "the tick count must be a whole number")
    refused(server.post("/api/reset", {"what": "everything"}), 400, "unknown reset 'everything'")
    refused(server.client.post("/api/message", content=b'{"text": "w5"}', headers={"Content-Type": "text/plain"}),
            415, "send JSON")
    refused(server.client.post("/api/message", content=b"text=w5"), 415, "send JSON")
    refused(server.post("/api/message", {"text": "w5"}, headers={"Origin": "http://evil.example"}), 403,
            "cross-origin request")
    refused(server.client.post("/api/message", content=b"{not json", headers={"Content-Type": "application/json"}),
            400, "not valid JSON")
    refused(server.post("/api/message", ["w5"]), 400, "must be a JSON object")
    big = json.dumps({"text": "w5 " * 30_000}).encode()
    refused(server.client.post("/api/message", content=big, headers={"Content-Type": "application/json"}), 413,
            "request body over")
    wrong_host = server.client.get("/api/state", headers={"Host": "attacker.example"})
    assert wrong_host.status_code == 400  # DNS rebinding: only loopback host names are served

    assert state_file.read_bytes() == original  # nothing was run, written or moved
    assert sorted(p.name for p in root.iterdir()) == listing
    assert not (tmp_path / "evil").exists() and not (root.parent / "evil").exists()
    state = server.client.get("/api/state").json()
    assert state["tick"] == 1 and len(state["points"]) == 1


STATIC_ESCAPES = [
    "/static/../app.py",
    "/static/%2e%2e/app.py",
    "/static/..%2fapp.py",
    "/static/%2e%2e%2fhost.py",
    "/static/vendor/..%2f..%2fhost.py",
    "/static/%2e%2e/%2e%2e/cli/serve.py",
    "/static/..%2f..%2f..%2f..%2fpyproject.toml",
    "/static//etc/passwd",
    "/static/%2fetc%2fpasswd",
    "/static/..%5capp.py",
]


def test_static_files_come_only_from_the_package_folder(served):
    server, _ = served
    from ran.web import STATIC

    assert server.client.get("/static/app.js").text == (STATIC / "app.js").read_text()
    assert server.client.get("/static/vendor/uPlot.iife.min.js").status_code == 200
    page = server.client.get("/")
    assert page.status_code == 200 and "/static/app.js" in page.text and "default-src 'self'" in \
        page.headers["content-security-policy"]
    secrets = [(STATIC.parent / "app.py").read_text()[:200], "root:x:0:0", "[build-system]"]
    host, port = server.listener.getsockname()[:2]
    for path in STATIC_ESCAPES:  # sent as raw request lines: no client-side normalisation of ".."
        connection = http.client.HTTPConnection(host, port, timeout=10)
        connection.putrequest("GET", path, skip_accept_encoding=True)
        connection.endheaders()
        response = connection.getresponse()
        body = response.read().decode(errors="replace")
        connection.close()
        assert response.status == 404, (path, response.status)
        assert not any(secret in body for secret in secrets), path


# ----- one pass at a time ----------------------------------------------------------------------------
def test_a_second_request_while_a_pass_runs_is_refused_and_nothing_is_lost(served):
    server, events = served
    results: dict[str, object] = {}
    ticking = threading.Thread(target=lambda: results.update(ticks=server.post("/api/tick", {"count": 1000})))
    ticking.start()
    events.wait(kind("pass_end"))  # the run is under way: 999 ticks to go
    second = server.client  # a second tab's requests
    for path, body in (("/api/message", {"text": "w5 w6"}), ("/api/tick", {"count": 1}),
                       ("/api/reset", {"what": "state"}), ("/api/save", {}),
                       ("/api/session", {"action": "new", "name": "other"})):
        response = second.post(path, json=body)
        assert response.status_code == 409, (path, response.text)
        assert response.json()["error"].startswith("refused: 1000 idle ticks is running on session 's'")
    assert second.post("/api/stop", json={}).json()["stopped"] is True
    ticking.join(timeout=60)
    done = results["ticks"].json()["tick"]
    assert 1 <= done < 1000
    got = events.wait(kind("busy", busy=None))
    passes = [e for e in events.seen if e["event"] == "pass_end"]
    assert [e["point"]["tick"] for e in passes] == list(range(1, done + 1))  # one at a time, none lost
    assert all(e["point"]["kind"] == "idle" for e in passes)  # the refused message never ran
    assert not any(e["event"] == "reset" for e in got)
    assert SessionStore("s", server.host.root).load().tick == done  # the disk holds every completed pass
    assert not (Path(server.host.root) / "other").exists()
    assert server.post("/api/message", {"text": "w5 w6"}).status_code == 200  # sent again, it runs


def test_every_page_sees_the_same_events(served):
    server, first = served
    second = Events(server.url)
    try:
        snapshot = second.wait(kind("snapshot"))[-1]
        assert snapshot["tick"] == 0
        server.post("/api/message", {"text": "w5 w6"})
        server.post("/api/tick", {"count": 2})
        one = first.wait(lambda e: e["event"] == "pass_end" and e["point"]["tick"] == 3)
        two = second.wait(lambda e: e["event"] == "pass_end" and e["point"]["tick"] == 3)
        assert one == two
        late = Events(server.url)  # a page opened later gets the log and the points so far
        snapshot = late.wait(kind("snapshot"))[-1]
        late.close()
        assert [p["tick"] for p in snapshot["points"]] == [1, 2, 3]
        replies = [e["reply"] for e in one if e["event"] == "pass_end"]
        assert [entry.get("reply") for entry in snapshot["log"] if entry["kind"] in ("prompt", "idle")] == replies
    finally:
        second.close()


# ----- the command ------------------------------------------------------------------------------------
def test_ran_serve_command_warns_off_loopback_and_stops_cleanly(model_dir, tmp_path):
    import httpx

    sessions = tmp_path / "sessions"
    command = [sys.executable, "-m", "ran", "serve", "--model", str(model_dir), *SETTINGS, "--session", "cmd",
               "--sessions-dir", str(sessions), "--host", "0.0.0.0", "--port", "0"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=os.environ | {"PYTHONUNBUFFERED": "1"})
    try:
        lines = []
        deadline = time.monotonic() + 600  # starting: imports and the model, slow on a loaded machine
        while not any(line.startswith("serving ") for line in lines) and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line.strip())
        serving = [line for line in lines if line.startswith("serving ")]
        assert serving, (lines, process.stderr.read() if process.poll() is not None else "")
        port = int(serving[0].split(":")[2].split("/")[0])
        assert lines[0].startswith("session 'cmd' (new)")
        page = httpx.get(f"http://127.0.0.1:{port}/", timeout=120)
        assert page.status_code == 200  # off loopback, any host name is served (and the warning said so)
        process.send_signal(signal.SIGINT)  # Ctrl-C: the normal way to stop it
        assert process.wait(timeout=300) == 0
        assert process.stdout.read().strip() == "stopped; session 'cmd' saved at tick 0"
        warnings = [line for line in process.stderr.read().splitlines() if "warning" in line]
        assert len(warnings) == 1 and "listening on 0.0.0.0, not a loopback address" in warnings[0]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    store = SessionStore("cmd", sessions)
    store.lock()  # released at exit
    store.unlock()
    assert store.load().tick == 0



def test_ran_serve_refuses_a_taken_port_and_a_bad_name_in_one_line(model_dir, tmp_path, capsys):
    from ran.cli import main
    from ran.cli.serve import bind

    listener = bind("127.0.0.1", 0)  # taken: refused before the model loads
    try:
        code = main(["serve", "--model", str(model_dir), "--sessions-dir", str(tmp_path), "--port",
                     str(listener.getsockname()[1])])
    finally:
        listener.close()
    errors = capsys.readouterr().err.splitlines()
    assert code == 2 and len(errors) == 1 and "cannot listen on 127.0.0.1 port" in errors[0], errors
    code = main(["serve", "--session", "../x", "--port", "0", "--model", str(model_dir), "--sessions-dir",
                 str(tmp_path)])
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert code == 2 and len(errors) == 1 and "invalid session name '../x'" in errors[0], errors
    assert code == 2 and list(tmp_path.iterdir()) == []
    code = main(["serve", "--port", "70000", "--model", str(model_dir), "--sessions-dir", str(tmp_path)])
    assert code == 2 and "--port must be an integer in 0..65,535" in capsys.readouterr().err


def test_every_static_file_is_in_the_package_data():
    """A wheel carries only what pyproject's package-data names: every file of the page must match it."""
    import fnmatch
    import tomllib

    from ran.web import STATIC

    root = Path(__file__).resolve().parent.parent
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["ran.web"]
    files = [path.relative_to(STATIC.parent).as_posix() for path in STATIC.rglob("*") if path.is_file()]
    assert {"static/index.html", "static/app.js", "static/vendor/uPlot.iife.min.js"} <= set(files)
    unpackaged = [name for name in files if not any(fnmatch.fnmatch(name, pattern) and name.count("/") ==
                                                        pattern.count("/") for pattern in patterns)]
    assert unpackaged == []
