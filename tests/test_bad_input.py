"""Bad input, from a table: every row must be refused with exit status 2 and one line on stderr naming the
problem, with no traceback, and must leave every file it could touch byte-identical.

Each row runs in-process through ``ran.cli.main``. ``@W`` in an argument is the shared world built once per
module: two tiny random-weight models, a valid task file, a trained artifact, a stored session, existing
results of every subcommand, a plain file, a binary file, a directory, and the bad task files and scripts
the rows name. Before and after each row the world's files are hashed (and its paths listed): nothing
may change, appear or vanish. Paths outside the world that a row names (``@T``, a fresh directory per
row) must not appear either. Rows that a model must see load a tiny one; the rest never load a model.
"""

import hashlib
import json
import re
from pathlib import Path

import pytest
from tiny_models import tiny_model, tiny_session_model_dir, tiny_tokenizer

from ran.cli import main

WORDS = "@W/models/words"  # tiny Llama, word-level tokenizer ("w10" is one token), for crosspass/eval/population
SESSION_MODEL = "@W/models/session"  # the same with whitespace tokens, for sessions (an idle tick reads "\n")
ARTIFACT = "@W/artifacts/kv-keys4-scaling0.2-seed0"
TASK = {"keys": ["w10", "w11", "w12", "w13"], "store_template": "w3 w4 {key} w5", "recall_template": "w6 w7",
        "train_distractors": ["w20 w21", "w22"], "eval_distractors": ["w30 w31"]}

# name -> content of @W/tasks/<name>.json (merged over the valid TASK unless it is not a dict)
BAD_TASKS = {
    "keys-string": {"keys": "tiger"},
    "keys-numbers": {"keys": [1, 2]},
    "keys-empty": {"keys": []},
    "keys-duplicate": {"keys": ["w10", "w10"]},
    "train-delays-number": {"train_delays": 5},
    "train-delays-three": {"train_delays": [0, 1, 2]},
    "train-delays-reversed": {"train_delays": [8, 0]},
    "eval-delays-float": {"eval_delays": [1.5]},
    "eval-delays-bool": {"eval_delays": [True]},
    "eval-delays-over-cap": {"eval_delays": [100000]},
    "repeats-string": {"repeats": "3"},
    "repeats-zero": {"repeats": 0},
    "unknown-field": {"colour": "blue"},
    "template-positional": {"store_template": "{0} {key}"},
    "template-other-field": {"store_template": "{key} {other}"},
    "template-no-key": {"store_template": "w3 w4"},
    "template-unbalanced": {"store_template": "w3 {key"},
    "template-format-spec": {"store_template": "w3 {key:>9}"},
    "recall-template-key": {"recall_template": "w6 {key}"},
    "answer-template-not-last": {"answer_template": "{key} w9"},
    "filler-unknown": {"filler": "silence"},
    "distractor-with-key": {"keys": ["tiger", "apple"], "train_distractors": ["The tiger sleeps."]},
    "key-pool-type": {"key_pool": {"source": "builtin", "train": "many"}, "keys": None},
    "key-pool-field": {"key_pool": {"sauce": "vocab"}, "keys": None},
    "key-pool-source": {"key_pool": {"source": "dictionary"}, "keys": None},
    "a-list": [1, 2, 3],
    "a-string": "keys",
}
# name -> content of @W/memory-tasks/<name>.json, a user's own values for ran remember (kind "word" only)
MEMORY_TASK = {"kinds": ["word"], "values": {"word": ["w10", "w11", "w12"]}, "heldout_values": {"word": ["w13"]},
               "store_templates": {"word": ["w3 {value} w4"]}, "recall_templates": {"word": ["w6 w7"]},
               "heldout_store_templates": {"word": ["w8 {value}"]}, "heldout_recall_templates": {"word": ["w9"]}}
BAD_MEMORY_TASKS = {
    "values-empty": {"values": {"word": []}},
    "values-string": {"values": "tiger"},
    "template-no-slot": {"store_templates": {"word": ["w3 w4"]}},
    "heldout-value-trained": {"heldout_values": {"word": ["w11"]}},
    "heldout-template-trained": {"heldout_store_templates": {"word": ["w3 {value} w4"]}},
    "kind-unknown": {"values": {"colour": ["w10"]}},
    "read-span-unknown": {"read_span": "first"},
    "distractor-shared": {"train_distractors": ["w20 w21", "w22"], "eval_distractors": ["w22"]},
    "opener-rate-over-one": {"opener_rate": 1.5},
    "answer-as-stored-string": {"answer_as_stored": "yes"},
}
# name -> lines of @W/episode-files/<name>.jsonl (ran battery --episode-file): a good first line, then the bad one
EPISODE = {"heldout": True, "passes": [{"text": "w3 w10"}, {"idle": True, "wipe": True, "speak": False},
                                        {"idle": True, "target": " w10", "speak": True}]}
BAD_EPISODE_FILES = {
    "bad-json": [json.dumps(EPISODE), '{"passes": [{"text": "w3"}'],
    "missing-field": [json.dumps(EPISODE), json.dumps({"passes": [{"target": " w10"}]})],
    "idle-target": [json.dumps(EPISODE), json.dumps({"passes": [{"text": "w3"}, {"idle": True, "target": " w10"}]})],
    "unknown-field": [json.dumps(EPISODE), json.dumps({"passes": [{"text": "w3", "traget": " w10"}]})],
    "read-not-said": [json.dumps(EPISODE), json.dumps({"passes": [{"text": "w3", "read": "w10"},
                                                                  {"text": "w4", "target": " w10"}]})],
    "nothing-held": [json.dumps({**EPISODE, "heldout": False})],
    "recall": [json.dumps(EPISODE), json.dumps({**EPISODE, "heldout": False})],
}
# name -> text of @W/scripts/<name>.txt
SCRIPTS = {
    "slash": "w5 w6\n/\n",
    "tick-one": "/tick 1\n",
    "tick-zero": "/tick 0\n",
    "tick-over-cap": "/tick 1001\n",
    "tick-huge": "/tick 999999999\n",
    "tick-negative": "/tick -3\n",
    "tick-two-counts": "/tick 2 3\n",
    "reset-bogus": "/reset everything\n",
    "unknown-command": "/dance\n",
    "long-line": "w5 " * 400_000 + "\n",
    "over-window": " ".join(["w5"] * 300) + "\n",  # 599 tokens with the spaces: more than --window 252 keeps
    "over-positions": " ".join(["w5"] * 300) + "\n",  # with --policy none: past the tiny model's 128 positions
    "args-unclosed": "--tasks timed\n--set 'timed.instruction=Say {word} in {turns} turn{s}.\n",  # an @FILE
}

ROWS = [
    # ----- check ------------------------------------------------------------------------------------------
    ("check", ["--new-tokens", "-1"], "--new-tokens must be an integer in 0..4096, got -1"),
    ("check", ["--new-tokens", "1e9"], "argument --new-tokens: invalid int value"),
    ("check", ["--units", "0"], "--units must be an integer >= 1, got 0"),
    ("check", ["--units", "100000000"], "units must be at most 65,536, got 100,000,000: its matrices would need"),
    ("check", ["--spectral-radius", "0"], "--spectral-radius must be a number in (0, 100]"),
    ("check", ["--spectral-radius", "nan"], "--spectral-radius must be a number in (0, 100], got nan"),
    ("check", ["--leak-rate", "1.5"], "--leak-rate must be a number in (0, 1]"),
    ("check", ["--input-scaling", "inf"], "--input-scaling must be a number in [0, 1e+06], got inf"),
    ("check", ["--connectivity", "0"], "--connectivity must be a number in (0, 1]"),
    ("check", ["--slots", "0"], "--slots must be an integer in 1..1024"),
    ("check", ["--slots", "5000"], "--slots must be an integer in 1..1024"),
    ("check", ["--read-places", "0"], "--read-places must be an integer in 1..64"),
    ("crosspass", ["--model", WORDS, "--task", "@W/task.json", "--units", "32", "--seeds", "0", "--out", "@T",
                   "--read-places", "2"], "read_places 2 orders the gated read's open tokens"),
    ("crosspass", ["--model", WORDS, "--task", "@W/task.json", "--units", "32", "--seeds", "0", "--out", "@T",
                   "--read-from", "embeddings"], "read_from 'embeddings' is what the gated read's gates weigh"),
    ("check", ["--running-units", "-1"], "--running-units must be an integer >= 0, got -1"),
    ("crosspass", ["--model", WORDS, "--task", "@W/task.json", "--units", "32", "--seeds", "0", "--out", "@T",
                   "--running-units", "8"], "running_units 8 step every pass beside units the write holds"),
    ("crosspass", ["--model", WORDS, "--task", "@W/task.json", "--units", "32", "--seeds", "0", "--out", "@T",
                   "--summary", "gated", "--write", "switched", "--running-units", "32"],
     "running_units must be an integer from 0 to 31"),
    ("crosspass", ["--model", WORDS, "--task", "@W/task.json", "--units", "32", "--seeds", "0", "--out", "@T",
                   "--summary", "gated", "--write", "switched", "--running-read"],
     "running_read gives the running units a gated read of their own: it needs running_units > 0"),
    ("battery", ["--model", WORDS, "--tasks", "timed", "--units", "32", "--seeds", "0", "--out", "@T",
                 "--gate-reads", "running"], "gate_reads 'running' gives the gate head the running units alone"),
    ("battery", ["--gate-reads", "held"], "invalid choice: 'held'"),
    ("battery", ["--model", WORDS, "--tasks", "timed", "--units", "32", "--seeds", "0", "--out", "@T",
                 "--running-clock", "isolated"], "running_clock 'isolated' cuts the held units out"),
    ("battery", ["--running-clock", "loose"], "invalid choice: 'loose'"),
    ("battery", ["--tick", "turn"], "tick 'turn' (an empty user turn) needs the chat format"),
    ("crosspass", ["--tick", "wall"], "invalid choice: 'wall'"),
    ("check", ["--read-from", "tokens"], "invalid choice: 'tokens'"),
    ("crosspass", ["--model", WORDS, "--task", "@W/task.json", "--units", "32", "--seeds", "0", "--out", "@T",
                   "--slot-order", "reply", "--mode", "prefix"], "slot_order 'reply' shows each place's kv slots"),
    ("crosspass", ["--model", WORDS, "--task", "@W/task.json", "--units", "32", "--seeds", "0", "--out", "@T",
                   "--slot-order", "reply", "--slots", "5", "--summary", "gated", "--read-places", "2"],
     "give n_slots a multiple of 2"),
    ("check", ["--slot-order", "position"], "invalid choice: 'position'"),
    ("battery", ["--reply-places", "-1"], "--reply-places must be an integer in 0..64, got -1"),
    ("battery", ["--model", WORDS, "--tasks", "sequence", "--units", "32", "--seeds", "0", "--out", "@T",
                 "--reply-places", "12"], "reply_places 12 splits the kv slots among the reply's places: it needs"),
    ("battery", ["--model", WORDS, "--tasks", "sequence", "--units", "32", "--seeds", "0", "--out", "@T",
                 "--slot-order", "reply", "--reply-places", "12"], "give n_slots a multiple of 12"),
    ("check", ["--layer", "-1"], "--layer must be an integer in 0..10,000"),
    ("check", ["--reservoir-seed", "-1"], "--reservoir-seed must be an integer in 0..4,294,967,295"),
    ("check", ["--mode", "sideways"], "invalid choice: 'sideways'"),
    ("check", ["--device", "tpu"], "unknown device 'tpu'"),
    ("check", ["--dtype", "float16", "--device", "cpu"], "float16 on the CPU is refused"),
    ("check", ["--model", "@W/nothing.gguf"], "GGUF file not found"),
    ("check", ["--model", "@W/adir"], "has no config.json"),
    ("check", ["--model", "@W/file.txt"], "a file, but not a .gguf file"),
    ("check", ["--model", WORDS, "--layer", "99"], "layer 99 out of range"),
    ("check", ["--bogus"], "unrecognized arguments: --bogus"),
    # ----- chat ---------------------------------------------------------------------------------------------
    ("chat", ["--session", "../escape", "--model", SESSION_MODEL, "--sessions-dir", "@W/sessions"],
     "invalid session name '../escape'"),
    ("chat", ["--session", "a/b", "--sessions-dir", "@W/sessions"], "invalid session name 'a/b'"),
    ("chat", ["--session", "", "--sessions-dir", "@W/sessions"], "invalid session name ''"),
    ("chat", ["--session", ".hidden", "--sessions-dir", "@W/sessions"], "invalid session name '.hidden'"),
    ("chat", ["--session", "nope", "--resume", "--sessions-dir", "@W/sessions"], "no session 'nope'"),
    ("chat", ["--session", "s", "--sessions-dir", "@W/sessions", "--model", SESSION_MODEL], "already exists"),
    ("chat", ["--session", "new", "--sessions-dir", "@W/file.txt"], "--sessions-dir @W/file.txt is a file"),
    ("chat", ["--session", "new", "--sessions-dir", "@W/file.txt/sub"], "lies inside the file"),
    ("chat", ["--session", "new", "--sessions-dir", "/sys/ran-sessions"], "is not writable"),
    ("chat", ["--session", "new", "--sessions-dir", "@T", "--max-new-tokens", "-1"],
     "--max-new-tokens must be an integer in 0..4096"),
    ("chat", ["--session", "new", "--sessions-dir", "@T", "--temperature", "-0.5"], "--temperature must be"),
    ("chat", ["--session", "new", "--sessions-dir", "@T", "--max-entropy", "nan"], "--max-entropy must be"),
    ("chat", ["--session", "new", "--sessions-dir", "@T", "--write-margin", "inf"],
     "--write-margin must be a number in [-100, 100], got inf"),
    ("run", ["--session", "new", "--sessions-dir", "@T", "--write-margin", "2", "--script", "@W/scripts/ok.txt",
             "--model", WORDS],
     "needs write 'pass-switched', not"),
    ("chat", ["--session", "new", "--sessions-dir", "@T", "--window", "-1"], "--window must be"),
    ("chat", ["--session", "new", "--sessions-dir", "@T", "--heavy", "5"], "only applies to the h2o policy"),
    ("chat", ["--session", "new", "--sessions-dir", "@T", "--policy", "lru"], "invalid choice: 'lru'"),
    ("chat", ["--session", "new", "--sessions-dir", "@T", "--units", "0"], "--units must be an integer >= 1"),
    ("chat", ["--session", "s", "--resume", "--sessions-dir", "@W/sessions", "--reservoir-seed", "9"],
     "another reservoir"),
    ("chat", ["--session", "s", "--resume", "--sessions-dir", "@W/sessions", "--model", "@W/models/session-other"],
     "another base model"),
    ("chat", ["--session", "new", "--sessions-dir", "@T", "--model", SESSION_MODEL, "--artifact", "@W/nothing"],
     "artifact directory not found"),
    ("chat", ["--session", "new", "--sessions-dir", "@T", "--model", WORDS, "--artifact", ARTIFACT, "--format",
              "chat"], "contradicts the artifact"),
    ("chat", ["--session", "new", "--sessions-dir", "@T", "--model", WORDS, "--artifact", ARTIFACT, "--tick",
              "turn"], "--tick 'turn' contradicts the artifact"),
    ("run", ["--session", "new", "--script", "@W/scripts/tick-one.txt", "--sessions-dir", "@T", "--model", WORDS,
             "--tick", "turn"], "tick 'turn' (an empty user turn) needs the chat format"),
    # ----- run ----------------------------------------------------------------------------------------------
    ("run", ["--session", "new", "--script", "@W/nothing.txt", "--sessions-dir", "@T"],
     "script @W/nothing.txt not found"),
    ("run", ["--session", "new", "--script", "@W/adir", "--sessions-dir", "@T"], "is a directory"),
    ("run", ["--session", "new", "--script", "@W/binary.bin", "--sessions-dir", "@T"], "is not a text file"),
    ("run", ["--session", "new", "--script", "@W/scripts/slash.txt", "--sessions-dir", "@T"],
     "slash.txt:2: '/' alone is not a command"),
    ("run", ["--session", "new", "--script", "@W/scripts/tick-zero.txt", "--sessions-dir", "@T"],
     "/tick takes one count in 1..1000"),
    ("run", ["--session", "new", "--script", "@W/scripts/tick-over-cap.txt", "--sessions-dir", "@T"],
     "/tick takes one count in 1..1000 (for more, repeat the command), got '1001'"),
    ("run", ["--session", "new", "--script", "@W/scripts/tick-huge.txt", "--sessions-dir", "@T"],
     "got '999999999'"),
    ("run", ["--session", "new", "--script", "@W/scripts/tick-negative.txt", "--sessions-dir", "@T"], "got '-3'"),
    ("run", ["--session", "new", "--script", "@W/scripts/tick-two-counts.txt", "--sessions-dir", "@T"],
     "got '2 3'"),
    ("run", ["--session", "new", "--script", "@W/scripts/reset-bogus.txt", "--sessions-dir", "@T"],
     "/reset takes all, state or context"),
    ("run", ["--session", "new", "--script", "@W/scripts/unknown-command.txt", "--sessions-dir", "@T"],
     "unknown command /dance"),
    ("run", ["--session", "new", "--script", "@W/scripts/long-line.txt", "--sessions-dir", "@T"],
     "the line is 1,200,000 characters, more than the 20,000"),
    ("run", ["--session", "new", "--script", "@W/scripts/over-window.txt", "--sessions-dir", "@T", "--model",
             SESSION_MODEL, "--units", "16", "--out", "@T/out"], "over-window.txt:1: the input is 599 tokens, but the"
     " context keeps only the last 252"),
    ("run", ["--session", "new", "--script", "@W/scripts/over-positions.txt", "--sessions-dir", "@T", "--model",
             SESSION_MODEL, "--units", "16", "--policy", "none", "--out", "@T/out"],
     "more than the 128 this model has"),
    ("run", ["--session", "new", "--script", "@W/scripts/ok.txt", "--sessions-dir", "@T", "--out", "@W/file.txt"],
     "--out @W/file.txt is a file"),
    ("run", ["--session", "new", "--script", "@W/scripts/ok.txt", "--sessions-dir", "@T", "--out",
             "@W/file.txt/sub"], "lies inside the file @W/file.txt"),
    ("run", ["--session", "new", "--script", "@W/scripts/ok.txt", "--sessions-dir", "@T", "--out", "/sys/ran-out"],
     "--out /sys/ran-out is not writable"),
    ("run", ["--session", "../../x", "--script", "@W/scripts/ok.txt", "--sessions-dir", "@W/sessions"],
     "invalid session name '../../x'"),
    ("run", ["--session", "s", "--script", "@W/scripts/ok.txt", "--sessions-dir", "@W/sessions", "--model",
             SESSION_MODEL], "already exists"),
    ("run", ["--session", "s", "--resume", "--script", "@W/scripts/ok.txt", "--sessions-dir", "@W/sessions",
             "--units", "48"], "another reservoir"),
    ("run", ["--session", "new", "--script", "@W/scripts/ok.txt", "--sessions-dir", "@W/file.txt"], "is a file"),
    ("run", ["--session", "new", "--script", "@W/scripts/ok.txt", "--sessions-dir", "@T", "--sinks", "-4"],
     "--sinks must be"),
    ("run", ["--session", "new", "--script", "@W/scripts/ok.txt", "--sessions-dir", "@T", "--sample-seed", "-1"],
     "--sample-seed must be"),
    ("run", ["--session", "new", "--sessions-dir", "@T"], "the following arguments are required: --script"),
    # ----- sweep --------------------------------------------------------------------------------------------
    ("sweep", ["--source", "synthetic", "--spectral-radii", "0"], "--spectral-radii must be a number in (0, 100]"),
    ("sweep", ["--source", "synthetic", "--input-scalings", "-1"], "--input-scalings must be"),
    ("sweep", ["--source", "synthetic", "--units", "64", "0"], "--units must be an integer >= 1, got 0"),
    ("sweep", ["--source", "synthetic", "--units", "100000000"], "units must be at most 65,536"),
    ("sweep", ["--source", "synthetic", "--leak-rates", "2"], "--leak-rates must be a number in (0, 1]"),
    ("sweep", ["--source", "synthetic", "--steps", "0"], "--steps must be an integer in 1..10,000,000"),
    ("sweep", ["--source", "synthetic", "--washout", "-1"], "--washout must be"),
    ("sweep", ["--source", "synthetic", "--max-saturation", "2"], "--max-saturation must be a number in [0, 1]"),
    ("sweep", ["--source", "synthetic", "--band-radius", "0"], "--band-radius must be"),
    ("sweep", ["--source", "synthetic", "--seeds"], "--seeds is empty"),
    ("sweep", ["--source", "synthetic", "--seeds", "-1"], "--seeds must be an integer in 0..4,294,967,295"),
    ("sweep", ["--source", "synthetic", "--spectral-radii"], "the sweep grid is empty"),
    ("sweep", ["--source", "both", "--out", "@W/results"], "sweep-both.json already exists; pass --overwrite"),
    ("sweep", ["--source", "synthetic", "--out", "@W/file.txt"], "--out @W/file.txt is a file"),
    ("sweep", ["--source", "telepathy"], "invalid choice: 'telepathy'"),
    # ----- memory -------------------------------------------------------------------------------------------
    ("memory", ["--source", "synthetic", "--max-delay", "0"], "--max-delay must be an integer in 1..100,000"),
    ("memory", ["--source", "synthetic", "--length", "1"], "--length must be an integer in 2..10,000,000"),
    ("memory", ["--source", "synthetic", "--test-fraction", "1"], "--test-fraction must be a number in (0, 1)"),
    ("memory", ["--source", "synthetic", "--ridge", "-1"], "--ridge must be"),
    ("memory", ["--source", "synthetic", "--units", "100000000"], "its matrices would need about"),
    ("memory", ["--source", "synthetic", "--leak-rate", "0"], "--leak-rate must be a number in (0, 1]"),
    ("memory", ["--source", "synthetic", "--seeds", "1", "1"], "seeds must be distinct"),
    ("memory", ["--source", "synthetic", "--out", "@W/results"], "memory-synthetic.json already exists"),
    ("memory", ["--source", "synthetic", "--out", "/sys/ran-out"], "is not writable"),
    # ----- gate ---------------------------------------------------------------------------------------------
    ("gate", ["--source", "synthetic", "--window", "0"], "window must be an integer >= 1"),
    ("gate", ["--source", "synthetic", "--trigger-rate", "1"], "--trigger-rate must be a number in (0, 1)"),
    ("gate", ["--source", "synthetic", "--steps", "10"], "must exceed washout"),
    ("gate", ["--source", "synthetic", "--spectral-radius", "-1"], "--spectral-radius must be"),
    ("gate", ["--source", "synthetic", "--out", "@W/results"], "gate-synthetic.json already exists"),
    ("gate", ["--source", "synthetic", "--out", "@W/file.txt/x"], "lies inside the file"),
    # ----- monitor ------------------------------------------------------------------------------------------
    ("monitor", ["--source", "synthetic", "--drifts", "-1"], "--drifts must be"),
    ("monitor", ["--source", "synthetic", "--stop-rate", "0"], "--stop-rate must be a number in (0, 1)"),
    ("monitor", ["--source", "synthetic", "--detect-f1", "0"], "--detect-f1 must be a number in (0, 1]"),
    ("monitor", ["--source", "synthetic", "--steps", "0"], "--steps must be"),
    ("monitor", ["--source", "synthetic", "--out", "@W/results"], "monitor-synthetic.json already exists"),
    ("monitor", ["--source", "synthetic", "--units", "-5"], "--units must be an integer >= 1"),
    # ----- probe (the same probes as ran probe NAME; the rows above are its old names) ------------------------
    ("probe", [], "the following arguments are required: NAME"),
    ("probe", ["memroy"], "invalid choice: 'memroy'"),
    ("probe", ["memory", "--source", "synthetic", "--max-delay", "0"], "--max-delay must be an integer in 1..100,000"),
    ("probe", ["gate", "--source", "synthetic", "--steps", "10"], "must exceed washout"),
    ("probe", ["monitor", "--source", "synthetic", "--out", "@W/results"], "monitor-synthetic.json already exists"),
    ("probe", ["sweep", "--source", "synthetic", "--spectral-radii"], "the sweep grid is empty"),
    ("probe", ["sweep", "--source", "both", "--out", "@W/results"], "sweep-both.json already exists"),
    ("probe", ["order", "--source", "synthetic", "--list-length", "5", "3"], "list_length must be two integers"),
    ("probe", ["order", "--source", "synthetic", "--words", "4"], "words must be an integer >= the longest list (6)"),
    ("probe", ["order", "--source", "synthetic", "--train-episodes", "5"], "--train-episodes must be an integer in 10"),
    ("probe", ["order", "--source", "synthetic", "--penalties", "-1"], "--penalties must be a number in [0, 1e+06]"),
    ("probe", ["order", "--source", "model", "--read", "token"], "unknown read 'token': choose one of pass, word"),
    # ----- crosspass ----------------------------------------------------------------------------------------
    *[("crosspass", ["--task", f"@W/tasks/{name}.json"], fragment) for name, fragment in [
        ("keys-string", "keys = 'tiger' is not valid: expected a list of strings"),
        ("keys-numbers", "keys[0] = 1 is not valid: expected a string"),
        ("keys-empty", "the key list is empty"),
        ("keys-duplicate", "the key list has duplicates"),
        ("train-delays-number", "train_delays = 5 is not valid: expected a list of 2 integers"),
        ("train-delays-three", "train_delays = [0, 1, 2] is not valid"),
        ("train-delays-reversed", "delay range 8-0 is reversed"),
        ("eval-delays-float", "eval_delays[0] = 1.5 is not valid: expected an integer"),
        ("eval-delays-bool", "eval_delays[0] = True is not valid: expected an integer"),
        ("eval-delays-over-cap", "above the cap of 256"),
        ("repeats-string", "repeats = '3' is not valid: expected an integer"),
        ("repeats-zero", "repeats must be an integer >= 1"),
        ("unknown-field", "unknown field 'colour'; valid fields are keys"),
        ("template-positional", "has the field {0}: only {key} may appear"),
        ("template-other-field", "has the field {other}: only {key} may appear"),
        ("template-no-key", "does not contain {key}"),
        ("template-unbalanced", "is not a valid template"),
        ("template-format-spec", "has the field {key:>9}"),
        ("recall-template-key", "recall_template (it must not contain the key) 'w6 {key}' has the field {key}"),
        ("answer-template-not-last", "must end with {key}"),
        ("filler-unknown", "unknown filler 'silence'"),
        ("distractor-with-key", "training distractor 'The tiger sleeps.' contains the key 'tiger'"),
        ("key-pool-type", "key_pool: train = 'many' is not valid: expected an integer"),
        ("key-pool-field", "key_pool: unknown field 'sauce'"),
        ("key-pool-source", "unknown key pool 'dictionary'"),
        ("a-list", "must hold a JSON object {...}, not list"),
        ("a-string", "must hold a JSON object {...}, not str"),
    ]],
    ("crosspass", ["--task", "@W/adir"], "task file @W/adir is a directory"),
    ("crosspass", ["--track", "wandb"], "argument --track: invalid choice: 'wandb'"),
    ("crosspass", ["--track", "tensorboard", "--track-dir", "@W/file.txt"], "--track-dir @W/file.txt is a file"),
    ("battery", ["--track", "tensorboard", "--track-dir", "/sys/ran-tb"], "--track-dir /sys/ran-tb is not writable"),
    ("crosspass", ["--task", "@W/binary.bin"], "is not a text file"),
    ("crosspass", ["--task", "@W/file.txt"], "is not valid JSON"),
    ("crosspass", ["--task", "@W/nothing.json"], "task file not found"),
    ("crosspass", ["--store-template", "{0} {key}"], "--store-template '{0} {key}' has the field {0}"),
    ("crosspass", ["--store-template", "{key} {other}"], "has the field {other}: only {key} may appear"),
    ("crosspass", ["--store-template", "The word {key"], "is not a valid template"),
    ("crosspass", ["--store-template", "no key here"], "does not contain {key}"),
    ("crosspass", ["--recall-template", "was {key}"], "it must not contain a field"),
    ("crosspass", ["--train-delays", "8-0"], "is reversed"),
    ("crosspass", ["--train-delays", "x"], "is not N or LOW-HIGH"),
    ("crosspass", ["--train-delays", "0-100000"], "above the cap of 256"),
    ("crosspass", ["--eval-delays", "999"], "--eval-delays must be an integer in 0..256"),
    ("crosspass", ["--key-list", "w10,w10"], "duplicates"),
    ("crosspass", ["--keys", "0"], "--keys must be an integer in 1..1,000,000"),
    ("crosspass", ["--keys", "61"], "the built-in pool has"),
    ("crosspass", ["--heldout-keys", "-1"], "--heldout-keys must be"),
    ("crosspass", ["--steps", "0"], "--steps must be"),
    ("crosspass", ["--lr", "0"], "--lr must be a number in (0, 10]"),
    ("crosspass", ["--lr", "inf"], "--lr must be"),
    ("crosspass", ["--lora-rank", "-1"], "--lora-rank must be"),
    ("crosspass", ["--repeats", "0"], "--repeats must be"),
    ("crosspass", ["--capacity", "0"], "--capacity must be"),
    ("crosspass", ["--scalings", "-0.1"], "--scalings must be"),
    ("crosspass", ["--seeds"], "expected at least one argument"),
    ("crosspass", ["--grid", "units=abc"], "are not all int"),
    ("crosspass", ["--grid", "colour=1,2"], "unknown grid field 'colour'"),
    ("remember", ["--grid", "idle_write=never"], "unknown idle_write 'never': choose one of gate, keep"),
    ("remember", ["--write", "always", "--idle-write", "keep"], "idle_write 'keep' holds the state through idle"),
    ("crosspass", ["--grid", "keys=0,6"], "grid keys=0 is not a number of keys this task has"),
    ("crosspass", ["--grid", "units=100000000"], "units must be at most 65,536"),
    ("crosspass", ["--grid", "leak_rate=0,1"], "leak_rate must be in (0, 1]"),
    ("crosspass", ["--name", "../../escape"], "invalid --name '../../escape'"),
    ("crosspass", ["--name", "a/b"], "invalid --name 'a/b'"),
    ("crosspass", ["--out", "@W/file.txt"], "--out @W/file.txt is a file"),
    ("crosspass", ["--out", "@W/file.txt/sub"], "lies inside the file"),
    ("crosspass", ["--out", "/sys/ran-out"], "--out /sys/ran-out is not writable"),
    ("crosspass", ["--save", "@W/file.txt"], "--save @W/file.txt is a file"),
    ("crosspass", ["--save", "/sys/ran-save"], "--save /sys/ran-save is not writable"),
    ("crosspass", ["--model", WORDS, "--task", "@W/task.json", "--units", "32", "--seeds", "0", "--out",
                   "@W/results"], "the file @W/results/crosspass.json already exists; pass --overwrite"),
    ("crosspass", ["--model", WORDS, "--task", "@W/task.json", "--units", "32", "--seeds", "0", "--out", "@T",
                   "--save", "@W/artifacts"], "the artifact @W/artifacts/kv-keys4-scaling0.2-seed0 already exists"),
    ("crosspass", ["--model", WORDS, "--task", "@W/task.json", "--units", "32", "--seeds", "0", "--out", "@T",
                   "--save", "@T/a", "--grid", "leak_rate=0.1,0.2"], "two runs would be saved as the same artifact"),
    ("crosspass", ["--format", "chat", "--model", WORDS, "--task", "@W/task.json", "--units", "32", "--seeds",
                   "0", "--out", "@T"], "the chat pass format needs the tokens"),
    # ----- eval ---------------------------------------------------------------------------------------------
    ("eval", ["@W/nothing"], "artifact directory not found"),
    ("eval", ["@W/adir"], "is not a ran artifact: it has no ran_config.json"),
    ("eval", ["@W/file.txt"], "artifact directory not found"),
    ("eval", [ARTIFACT, "--task", "@W/tasks/keys-string.json"], "keys = 'tiger' is not valid"),
    ("eval", [ARTIFACT, "--task", "@W/adir"], "is a directory"),
    ("eval", [ARTIFACT, "--eval-delays", "-1"], "--eval-delays must be an integer in 0..256"),
    ("eval", [ARTIFACT, "--key-list", "w10"], "held-out keys are also training keys"),
    ("eval", [ARTIFACT, "--device", "tpu"], "unknown device 'tpu'"),
    ("eval", [ARTIFACT, "--write-margin", "2"], "needs write 'pass-switched', not 'always'"),
    ("eval", [ARTIFACT, "--model", SESSION_MODEL], "different base model"),
    ("eval", [ARTIFACT, "--task", "@W/task.json", "--key-list", "w9"], "not allowed with argument --task"),
    ("eval", [ARTIFACT, "--json", "@W/adir"], "--json @W/adir is a directory: give the name of a JSON file"),
    ("eval", [ARTIFACT, "--json", "@W/file.txt"], "the file @W/file.txt already exists; pass --overwrite"),
    ("eval", [ARTIFACT, "--json", "@W/file.txt/out.json"], "out.json: the directory @W/file.txt is a file"),
    # ----- battery ------------------------------------------------------------------------------------------
    ("battery", ["--tasks", "recall", "timd"], "unknown task 'timd' (did you mean 'timed'?)"),
    ("battery", ["--tasks", "recall", "recall"], "a task is given twice"),
    ("battery", ["--gate-hidden", "-1"], "--gate-hidden must be an integer in 0..65,536, got -1"),
    ("battery", ["--set", "bogus"], "is not TASK.FIELD=VALUE"),
    ("battery", ["--tasks", "timed", "--set", "timed.turns=5"], "--set timed: turns = 5 is not valid: expected a list"),
    ("battery", ["--tasks", "timed", "--set", "timed.instruction={x} {word}"], "has the field {x}"),
    ("battery", ["--tasks", "recall", "--set", "recall.keys=tiger"], "keys = 'tiger' is not valid"),
    ("battery", ["--tasks", "recall", "--set", "recall.colour=1"], "unknown field 'colour'"),
    ("battery", ["--tasks", "recall", "--set", "timed.turns=2-3"], "task 'timed' is not among --tasks"),
    ("battery", ["--tasks", "timed", "--set", "timed.appointments=0-2"], "appointments 0-2 is outside 1-8"),
    ("battery", ["--tasks", "recall", "timed", "--weights", "1"], "1 weights for 2 tasks"),
    ("battery", ["--weights", "-1"], "--weights must be"),
    ("battery", ["@@W/nothing.args"], "arguments file not found: @W/nothing.args"),
    ("battery", ["@@W/adir"], "arguments file @W/adir is a directory: give a text file of flags"),
    ("battery", ["@@W/binary.bin"], "arguments file @W/binary.bin is not a text file (not UTF-8)"),
    ("battery", ["@@W/scripts/args-unclosed.txt"],
     "arguments file @W/scripts/args-unclosed.txt line 2: No closing quotation in \"--set 'timed.instruction=Say"),
    ("battery", ["--episodes-per-step", "0"], "--episodes-per-step must be"),
    ("battery", ["--recipe", "magic"], "invalid choice: 'magic'"),
    ("battery", ["--grid", "colour=1,2"], "unknown grid field 'colour': choose from units, leak_rate"),
    ("battery", ["--grid", "units=abc"], "grid values 'abc' of 'units' are not all int"),
    ("battery", ["--grid", "leak_rate=0,1"], "leak_rate must be in (0, 1]"),
    ("battery", ["--grid", "leak_rate="], "grid field 'leak_rate' is empty"),
    ("battery", ["--grid", "lora_rank=0,8"], "the battery's LoRA rank is the recipe's"),
    ("battery", ["--tasks", "timed", "--alone"], "--alone trains each task of the mix by itself beside the mix"),
    ("battery", ["--tasks", "timed", "--gate-context", "pass"], "gate_context 'pass' is what the gated read's gates "
     "see: it needs summary 'gated', not 'last'"),
    ("battery", ["--tasks", "timed", "--summary", "gated", "--running-gate-context", "pass"],
     "running_gate_context 'pass' is what the running units' own read's gates see: it needs running_read"),
    ("battery", ["--tasks", "recall", "--set", 'recall.word_pool={"train": 6}'],
     "--set recall.word_pool: task 'recall' has no words to draw (word_pool is for timed and initiative)"),
    ("battery", ["--tasks", "timed", "--set", 'timed.word_pool={"size": 6}'],
     "--set timed.word_pool: unknown field 'size'; valid fields are source, train, heldout"),
    ("battery", ["--tasks", "timed", "--set", 'timed.word_pool={"train": 6}', 'timed.words=["apple"]'],
     "--set timed.word_pool: give the words by word_pool or by words, not both"),
    ("battery", ["--tasks", "timed", "--set", 'timed.word_pool={"train": 500}'],
     "the built-in pool has"),
    ("battery", ["--tasks", "timed", "--set", "timed.read=say {word} soon"], "is not part of the instruction"),
    ("battery", ["--tasks", "silence", "--set", "silence.running_read=go"],
     "silence: running_read 'go' is not part of 'Go.': a pass can only read what it says"),
    ("battery", ["--tasks", "accumulate", "--set", "accumulate.read={total}"],
     "accumulate read '{total}' has the field {total}: only {value} and {text} may appear"),
    ("battery", ["--tasks", "timed", "--set", 'timed.heldout_instructions=["In {turns} turn{s}, say {word}."]'],
     "held-out instruction 'In {turns} turn{s}, say {word}.' is also a training phrasing"),
    ("battery", ["--name", "../x"], "invalid --name '../x'"),
    ("battery", ["--out", "@W/file.txt"], "is a file"),
    ("battery", ["--save", "@W/file.txt/x"], "lies inside the file"),
    ("battery", ["--out", "@W/results"], "the file @W/results/battery.json already exists"),
    ("battery", ["--episode-file", "@W/episode-files/bad-json.jsonl"],
     "task file @W/episode-files/bad-json.jsonl, line 2: not valid JSON (Expecting ',' delimiter at column 27)"),
    ("battery", ["--episode-file", "@W/episode-files/missing-field.jsonl"],
     "missing-field.jsonl, line 2: passes[0]: missing field 'text'"),
    ("battery", ["--episode-file", "@W/episode-files/idle-target.jsonl"],
     "idle-target.jsonl, line 2: passes[1].target ' w10' on an idle tick not labelled \"speak\": true"),
    ("battery", ["--episode-file", "@W/episode-files/unknown-field.jsonl"],
     "unknown-field.jsonl, line 2: passes[0]: unknown field 'traget'; valid fields are text, target, idle, wipe"),
    ("battery", ["--episode-file", "@W/episode-files/read-not-said.jsonl"],
     "read-not-said.jsonl, line 2: passes[0].read 'w10' is not part of the text 'w3'"),
    ("battery", ["--episode-file", "@W/episode-files/nothing-held.jsonl"], "no episode has \"heldout\": true"),
    ("battery", ["--episode-file", "@W/episode-files/recall.jsonl"], "named 'recall', which is a built-in task"),
    ("battery", ["--episode-file", "@W/nothing.jsonl"], "task file not found: @W/nothing.jsonl"),
    ("battery", ["--episode-file", "@W/file.txt"], "task file @W/file.txt must end in .jsonl"),
    ("battery", ["--episode-file", "@W/episode-files/idle-target.jsonl", "@W/idle-target.jsonl"],
     "two task files would be named 'idle-target'"),
    # ----- remember -----------------------------------------------------------------------------------------
    ("remember", ["--steps", "0"], "--steps must be an integer in 1..10,000,000, got 0"),
    ("remember", ["--write-margin", "nan"], "--write-margin must be a number in [-100, 100], got nan"),
    ("remember", ["--grid", "write_margin=nan"], "write_margin must be a finite number (a logit), got nan"),
    ("remember", ["--write-margin", "x"], "invalid float value: 'x'"),
    ("remember", ["--write", "switched", "--write-margin", "1"], "needs write 'pass-switched', not 'switched'"),
    ("remember", ["--write-hidden", "-1"], "--write-hidden must be an integer in 0..65,536, got -1"),
    ("remember", ["--write", "gated", "--write-hidden", "8"], "write_hidden 8 gives the pass-switched write's switch"),
    ("remember", ["--value-read", "decoded", "--slot-order", "content"], "value_read 'decoded' decodes each place's "
     "token embedding for the query that says it: it needs slot_order 'reply' or 'content-reply' and read_from "
     "'embeddings', not 'content' and 'embeddings'"),
    ("remember", ["--value-read", "residual", "--read-from", "layer"],
     "value_read 'residual' decodes each place's token embedding for the query that says it: it needs slot_order "
     "'reply' or 'content-reply' and read_from 'embeddings', not 'reply' and 'layer'"),
    ("remember", ["--slot-order", "content-reply", "--read-places", "8", "--slots", "9"],
     "slot_order 'content-reply' splits the 9 slots evenly among the reply's 8 places: give n_slots a multiple of 8"),
    ("remember", ["--value-read", "pooled"], "invalid choice: 'pooled'"),
    ("remember", ["--place-count", "round"], "invalid choice: 'round'"),
    ("remember", ["--read-span", "first"], "invalid choice: 'first'"),
    ("remember", ["--place-count", "hard", "--read-places", "1"],
     "place_count 'hard' places the ordered read's tokens: it needs"),
    ("remember", ["--harm-fraction", "1"], "--harm-fraction must be a number in [0, 1), got 1.0"),
    ("remember", ["--leak-rate-min", "0"], "--leak-rate-min must be a number in (0, 1], got 0.0"),
    ("remember", ["--per-step", "0"], "--per-step must be"),
    ("remember", ["--seeds"], "expected at least one argument"),
    ("remember", ["--kinds", "colour"], "invalid choice: 'colour'"),
    ("remember", ["--train-delays", "9-1"], "is reversed"),
    ("remember", ["--name", "../x"], "invalid --name '../x'"),
    ("remember", ["--out", "@W/file.txt"], "--out @W/file.txt is a file"),
    ("remember", ["--out", "@W/results"], "the file @W/results/memory.json already exists"),
    ("remember", ["--save", "@W/file.txt/x"], "lies inside the file"),
    ("remember", ["--model", WORDS, "--task", "@W/adir"], "is a directory"),
    ("remember", ["--model", WORDS, "--task", "@W/memory-tasks/values-empty.json"], "has no entries for kind 'word'"),
    ("remember", ["--model", WORDS, "--task", "@W/memory-tasks/values-string.json"], "values = 'tiger' is not valid"),
    ("remember", ["--model", WORDS, "--task", "@W/memory-tasks/template-no-slot.json"],
     "template 'w3 w4' must contain {value} exactly once"),
    ("remember", ["--model", WORDS, "--task", "@W/memory-tasks/heldout-value-trained.json"],
     "held-out word value 'w11' is also a training value"),
    ("remember", ["--model", WORDS, "--task", "@W/memory-tasks/heldout-template-trained.json"],
     "held-out store template 'w3 {value} w4' is also a training template"),
    ("remember", ["--model", WORDS, "--task", "@W/memory-tasks/kind-unknown.json"], "unknown kind 'colour'"),
    ("remember", ["--model", WORDS, "--task", "@W/memory-tasks/distractor-shared.json"],
     "distractor 'w22' is both a training and an evaluation distractor"),
    ("remember", ["--grid", "write=gated"], "write_hidden 64 gives the pass-switched write's switch"),
    ("remember", ["--model", WORDS, "--task", "@W/memory-tasks/read-span-unknown.json"],
     "read_span 'first' is not one of value, last"),
    ("remember", ["--model", WORDS, "--task", "@W/memory-tasks/opener-rate-over-one.json"],
     "opener_rate must be in [0, 1] (with openers to draw), got 1.5"),
    ("remember", ["--model", WORDS, "--task", "@W/memory-tasks/answer-as-stored-string.json"],
     "answer_as_stored = 'yes' is not valid: expected true or false"),
    # ----- serve ------------------------------------------------------------------------------------------
    ("serve", ["--port", "70000"], "--port must be an integer in 0..65,535, got 70000"),
    ("serve", ["--port", "-1"], "--port must be"),
    ("serve", ["--port", "0", "--session", "../escape", "--sessions-dir", "@W/sessions"],
     "invalid session name '../escape'"),
    ("serve", ["--port", "0", "--session", "new", "--sessions-dir", "@W/file.txt"], "is a file"),
    ("serve", ["--port", "0", "--session", "new", "--sessions-dir", "@T", "--temperature", "-1"],
     "--temperature must be"),
    ("serve", ["--port", "0", "--session", "new", "--sessions-dir", "@T", "--units", "0"], "--units must be"),
    ("serve", ["--port", "0", "--session", "new", "--sessions-dir", "@T", "--model", SESSION_MODEL, "--artifact",
               "@W/nothing"], "@W/nothing"),
    # ----- population ---------------------------------------------------------------------------------------
    ("population", ["--reservoir-seeds", "5-1"], "reservoir seed range '5-1' is reversed"),
    ("population", ["--reservoir-seeds", "x"], "reservoir seed 'x' is not N or LOW-HIGH"),
    ("population", ["--train-seeds", "1", "1"], "training seeds repeat"),
    ("population", ["--track", "tensorboard", "--track-dir", "@W/file.txt"], "--track-dir @W/file.txt is a file"),
    ("population", ["--grid", "colour=1"], "unknown grid field 'colour'"),
    ("population", ["--task", "recal"], "did you mean 'recall'"),
    ("population", ["--task-file", "@W/adir"], "is a directory"),
    ("population", ["--task-file", "@W/tasks/keys-string.json"], "keys = 'tiger' is not valid"),
    ("population", ["--task-file", "@W/tasks/template-positional.json"], "has the field {0}"),
    ("population", ["--keys", "0"], "--keys must be"),
    ("population", ["--workers", "-1"], "--workers must be"),
    ("crosspass", ["--batch-runs", "0"], "--batch-runs must be"),
    ("battery", ["--batch-runs", "x"], "--batch-runs"),
    ("population", ["--threads", "0"], "--threads must be"),
    ("population", ["--workers", "2", "--ray-address", "127.0.0.1:1"], "not both"),
    ("population", ["--eval-delays", "999"], "--eval-delays must be"),
    ("population", ["--train-delays", "9-1"], "is reversed"),
    ("population", ["--reservoir-seeds", "0-99", "--train-seeds", "0-1", "--out", "@T"], "add --yes"),
    ("population", ["--task", "timed", "--keys", "3"], "--keys does not apply to the timed task"),
    ("population", ["--out", "@W/file.txt"], "--out @W/file.txt is a file"),
    ("population", ["--model", WORDS, "--task-file", "@W/task.json", "--reservoir-seeds", "0", "--train-seeds", "0",
                    "--out", "@W/population"], "holds the report of another population"),
    # Rows that ran as subprocesses in test_cli.py, test_crosspass_cli.py and test_battery.py (the entry point's
    # own exit status is still tested there, once): what they refused that no row above does.
    ("check", ["--model", "@W/no-such-dir/"], "unknown model"),
    ("check", ["--device", "cuda:7"], "cuda:7"),  # no CUDA: "has no CUDA GPU"; one GPU: "does not exist"
    ("crosspass", ["--model", WORDS, "--units", "32", "--seeds", "0", "--out", "@T", "--key-list", "w10,w11 w12"],
     "is not a single token"),
    ("crosspass", ["--model", WORDS, "--units", "32", "--seeds", "0", "--out", "@T", "--key-list", "train,w11"],
     "contains the key 'train'"),
    ("battery", ["--model", WORDS, "--units", "32", "--steps", "1", "--seeds", "0", "--idle-text", "w9", "--out", "@T",
                 "--tasks", "recall", "--set", 'recall.keys=["w10 w11"]'], "is not a single token"),
    ("battery", ["--tasks", "deferred", "--set", "deferred.eval_delays=[2,100000]"], "above the cap"),
    ("battery", ["--tasks", "recall", "timed", "--weights", "1", "-1"],
     "--weights must be a number in [0, 1e+06], got -1.0"),
]


def _ids(rows):
    return [f"{command}-{index}" for index, (command, _, _) in enumerate(rows)]


def test_every_subcommand_has_bad_input_rows():
    from ran.cli import SUBCOMMANDS

    counts = {name: sum(row[0] == name for row in ROWS) for name in SUBCOMMANDS}
    print("\nbad-input rows per subcommand: " + ", ".join(f"{name} {count}" for name, count in counts.items()))
    assert all(count >= 5 for count in counts.values()), counts


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from transformers.utils import logging

    logging.disable_progress_bar()  # transformers' "Loading weights" bar: stderr holds only what ran says
    root = tmp_path_factory.mktemp("world")
    words, session_model = root / "models" / "words", root / "models" / "session"
    tiny_model("llama").save_pretrained(words)
    tiny_tokenizer().save_pretrained(words)
    tiny_session_model_dir(session_model, seed=1)  # another base model than WORDS
    tiny_session_model_dir(root / "models" / "session-other", seed=2)
    (root / "task.json").write_text(json.dumps(TASK))
    (root / "tasks").mkdir()
    for name, content in BAD_TASKS.items():
        merged = {**TASK, **content} if isinstance(content, dict) else content
        if isinstance(merged, dict):
            merged = {key: value for key, value in merged.items() if value is not None}
        (root / "tasks" / f"{name}.json").write_text(json.dumps(merged))
    (root / "memory-tasks").mkdir()
    for name, content in BAD_MEMORY_TASKS.items():
        (root / "memory-tasks" / f"{name}.json").write_text(json.dumps({**MEMORY_TASK, **content}))
    (root / "episode-files").mkdir()
    for name, lines in BAD_EPISODE_FILES.items():
        (root / "episode-files" / f"{name}.jsonl").write_text("\n".join(lines) + "\n")
    (root / "scripts").mkdir()
    (root / "scripts" / "ok.txt").write_text("w5 w6\n/tick 2\n")
    for name, text in SCRIPTS.items():
        (root / "scripts" / f"{name}.txt").write_text(text)
    (root / "file.txt").write_text("not json, not a directory\n")
    (root / "binary.bin").write_bytes(bytes(range(256)) * 4)
    (root / "adir").mkdir()
    # A trained artifact and its results, and a stored session, made by the commands themselves.
    assert main(["crosspass", "--model", str(words), "--task", str(root / "task.json"), "--units", "32", "--steps",
                 "2", "--seeds", "0", "--eval-delays", "0", "--out", str(root / "results"), "--save",
                 str(root / "artifacts"), "--no-progress"]) == 0
    assert main(["run", "--session", "s", "--model", str(session_model), "--units", "32", "--max-new-tokens", "2",
                 "--sessions-dir", str(root / "sessions"), "--script", str(root / "scripts" / "ok.txt"), "--out",
                 str(root / "transcripts"), "--quiet"]) == 0
    for name in ("sweep-both", "memory", "memory-synthetic", "gate-synthetic", "monitor-synthetic", "battery"):
        (root / "results" / f"{name}.json").write_text('{"an": "earlier result"}\n')
    (root / "population").mkdir()
    (root / "population" / "population.json").write_text(json.dumps({"config": {"model": "another"}}))
    yield root
    logging.enable_progress_bar()


def snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root``: a file's SHA-256, or "dir"."""
    return {str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
            for path in sorted(root.rglob("*"))}


@pytest.mark.parametrize("command, argv, fragment", ROWS, ids=_ids(ROWS))
def test_bad_input_is_refused_in_one_line_and_changes_nothing(world, tmp_path, capsys, monkeypatch, command, argv,
                                                              fragment):
    fresh = tmp_path / "fresh"  # @T: a path that does not exist and must not appear
    cwd = tmp_path / "cwd"  # default outputs (runs/, sessions/) would land here: nothing may
    cwd.mkdir()
    monkeypatch.chdir(cwd)

    def place(text: str) -> str:
        return text.replace("@W", str(world)).replace("@T", str(fresh))

    def no_real_model():
        raise AssertionError("the embedded SmolLM2 was loaded: this input must be refused before any model loads")

    monkeypatch.setattr("ran.loading._cached_smollm2", no_real_model)
    before = snapshot(world)
    capsys.readouterr()
    try:
        code = main([command, *map(place, argv)])
    except SystemExit as exit_:  # argparse's usage errors
        code = exit_.code
    except BaseException as error:  # a traceback is the failure this test exists to catch
        pytest.fail(f"{command} {argv} raised {type(error).__name__}: {error}")
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1, f"stderr has {len(lines)} lines:\n{err}"
    assert "Traceback" not in err
    assert re.match(rf"ran( {command}( [a-z]+)?)?: error: ", lines[0]), lines[0]  # ran probe memory: error: ...
    assert place(fragment) in lines[0], lines[0]
    assert snapshot(world) == before, "a refused command changed the files"
    assert not fresh.exists(), f"a refused command created {fresh}"
    assert not any(cwd.iterdir()), f"a refused command wrote {list(cwd.iterdir())}"


def test_every_numeric_flag_has_a_limit():
    """The one validator (ran.cli.validate) covers every int and float flag of every subcommand."""
    from ran.cli import SUBCOMMANDS, build_parser, leaf_parsers
    from ran.cli.validate import LIMITS, numeric_actions

    parsers = leaf_parsers(build_parser())
    assert set(SUBCOMMANDS) <= {name.split()[0] for name in parsers} and "probe memory" in parsers
    flags = {(name, action.dest) for name, parser in parsers.items() for action in numeric_actions(parser)}
    assert len(flags) > 80
    assert not sorted(flag for flag in flags if flag[1] not in LIMITS)
