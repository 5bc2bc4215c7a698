"""Arguments and helpers shared by several subcommands."""

from __future__ import annotations

import argparse
import importlib.util
import re
import shutil
from collections.abc import Iterable
from pathlib import Path

from ran.devices import DTYPE_CHOICES
from ran.errors import ConfigError
from ran.fileio import check_directory, check_name, check_new
from ran.injection import INJECTION_MODES
from ran.loading import DEFAULT_MODEL
from ran.model import RanConfig
from ran.passes import FORMATS, TICKS, PassFormat
from ran.reading import (
    DRIVES,
    GATE_CONTEXTS,
    IDLE_WRITES,
    READ_SOURCES,
    RECALLS,
    RUNNING_CLOCKS,
    SLOT_ORDERS,
    SUMMARIES,
    WRITES,
)
from ran.reservoir import ACTIVATIONS, ReservoirConfig
from ran.tracking import DEFAULT_DIRECTORY, TRACKERS, TrackConfig

DEFAULT_OUT = "runs"  # results of a run go here (ignored by git); README's committed results live in results/
# The retention study's reservoir (README, "Retention"), the default of ran crosspass, battery and population: a
# slow leak averages distractors out over ~20 passes while the key, refreshed through the slots, persists;
# saturating input gives the refresh a stable, nearly binary target. One-hop recall is 1.00 with it too.
RETENTION_RESERVOIR = ReservoirConfig(units=2048, leak_rate=0.05, input_scaling=0.2)


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help=f"alias, Hugging Face id, local directory or .gguf file (default: {DEFAULT_MODEL})")
    parser.add_argument("--mode", default="kv", choices=list(INJECTION_MODES), help="injection mode (default: kv)")
    parser.add_argument("--layer", type=int, default=None, help="layer to read and write at (default: the middle)")
    parser.add_argument("--slots", type=int, default=8, help="reservoir slots / prefix tokens (default: 8)")
    parser.add_argument("--device", default="auto",
                        help="auto (CUDA when present, else the CPU), cpu, cuda or cuda:N (default: auto)")
    parser.add_argument("--dtype", default="auto", choices=list(DTYPE_CHOICES),
                        help="model weights and activations: auto = bfloat16 on CUDA, float32 on the CPU; the "
                             "reservoir state is always float32 (default: auto)")
    parser.add_argument("--summary", default="last", choices=list(SUMMARIES),
                        help="what the reservoir reads from the layer: the last prompt token, the mean over the "
                             "prompt's tokens, a trained attention read, or a trained per-token gated read "
                             "(default: %(default)s)")
    parser.add_argument("--write", default="always", choices=list(WRITES),
                        help="when the reservoir steps: every pass; (gated, with --summary gated) as far as the "
                             "pass's strongest read gate opens, so passes with nothing to keep leave the state "
                             "as it was; (switched) fully where that gate is open and not at all elsewhere; or "
                             "(pass-switched) fully where a trained switch on layer L's input at the prompt's end "
                             "opens, one decision per pass; the switches are taught by the passes' read labels in "
                             "training (default: %(default)s)")
    parser.add_argument("--idle-write", default="gate", choices=list(IDLE_WRITES),
                        help="what an idle tick writes, with a write that can hold: what its write decides, as "
                             "any pass's (gate), or nothing (keep), so a tick that rereads an earlier turn in the "
                             "context cannot overwrite what that turn stored; training teaches the write shut on "
                             "idle ticks either way (default: %(default)s)")
    parser.add_argument("--running-units", type=int, default=0, metavar="R",
                        help="with a write that can hold (gated, switched, pass-switched): the reservoir's last R "
                             "units step on every pass whatever the write decides, a running clock beside the held "
                             "memory (with --leak-rate-min, the fastest units) (default: 0, the write moves every "
                             "unit)")
    parser.add_argument("--running-read", action="store_true",
                        help="with --running-units and --summary gated: the running units step on a gated read of "
                             "their own, trained on the task's running_read labels (e.g. timed's N), while the held "
                             "units take in the main read (e.g. its word) (default: one read for every unit)")
    parser.add_argument("--running-gate-context", default="token", choices=list(GATE_CONTEXTS),
                        help="with --running-read: what a token's gate in the running units' read sees, as "
                             "--gate-context does for the main read; pass lets it see the pass's last token, which "
                             "has read the whole turn (default: %(default)s)")
    parser.add_argument("--running-clock", default="coupled", choices=list(RUNNING_CLOCKS),
                        help="with --running-units: whether the running units' step sees the held units through "
                             "W_r (coupled) or only themselves (isolated: W_r's held-to-running block is cut, so a "
                             "held word cannot drive the clock) (default: %(default)s)")
    parser.add_argument("--recall", default="always", choices=list(RECALLS),
                        help="which passes see the memory (kv mode): every pass, or (switched) those where a "
                             "trained switch on layer L's input opens, taught by the passes' recall labels in "
                             "training, so the others run exactly as the base model (default: %(default)s)")
    parser.add_argument("--drive", default="pass", choices=list(DRIVES),
                        help="how a pass drives the reservoir: one step on the pass's summary, or (token, with "
                             "--summary gated) one step per token, each as far as its read gate opens, so a value "
                             "of several tokens (a name, a number) enters the state in order "
                             "(default: %(default)s)")
    parser.add_argument("--read-places", type=int, default=1, metavar="P",
                        help="with --summary gated: 1 averages the tokens the read takes in; P > 1 keeps the first P "
                             "apart, in order, each in its own place of the reservoir's input, so a value of several "
                             "tokens keeps its order (default: %(default)s)")
    parser.add_argument("--read-from", default="layer", choices=list(READ_SOURCES),
                        help="with --summary gated: what the read's gates weigh, layer L's output, or (embeddings) "
                             "the tokens' input embeddings, the tokens themselves; the gates come from layer L "
                             "either way (default: %(default)s)")
    parser.add_argument("--gate-context", default="token", choices=list(GATE_CONTEXTS),
                        help="with --summary gated: what a token's read gate sees, its own layer-L output, which "
                             "knows only the tokens before it, or (pass) also the pass's last token, which has read "
                             "the whole pass, so a gate can open on what the pass says after its token (README, "
                             "r53: no gain on the recipe), or (next) also the token after its own, so a word's first "
                             "piece can see that another piece follows (default: %(default)s)")
    parser.add_argument("--slot-order", default="content", choices=list(SLOT_ORDERS),
                        help="how a query finds the kv slots: by content, or (reply) by place: the slots are split "
                             "among the read's places (or --reply-places) and place j's are seen only by the query "
                             "that says the reply's j-th token, so each token of a value is read back like a single "
                             "word; "
                             "content-reply: the same, and the prompt's other tokens see every slot, as by content "
                             "(default: %(default)s)")
    parser.add_argument("--whiten", action="store_true",
                        help="the kv slots read the state whitened, (r - mean) W, fit before training on the states "
                             "the task's training episodes carry into their answers: the same linear read, well "
                             "conditioned. A read trained apart from the model gets a list back from the whitened "
                             "state and not from the raw one; in the model, fit before the read is trained, it did "
                             "worse (README, 'Sequence, whitened')")
    parser.add_argument("--reply-places", type=int, default=0, metavar="P",
                        help="with --slot-order reply or content-reply: the reply's places the slots are split "
                             "among, whatever the read; 0 takes the read's places (--read-places). A list said over "
                             "several passes (the sequence task) gets one place per token of its answer "
                             "(default: %(default)s)")


def add_reservoir_arguments(parser: argparse.ArgumentParser, defaults: ReservoirConfig | None = None,
                            with_seed: bool = True) -> None:
    """The reservoir's settings as flags; ``with_seed=False`` where the seed comes from a seed list."""
    d = defaults or ReservoirConfig()
    group = parser.add_argument_group("reservoir")
    group.add_argument("--units", type=int, default=d.units, help=f"reservoir size K (default: {d.units})")
    group.add_argument("--spectral-radius", type=float, default=d.spectral_radius,
                       help=f"spectral radius of W_r (default: {d.spectral_radius})")
    group.add_argument("--leak-rate", type=float, default=d.leak_rate,
                       help=f"leak rate in (0, 1] (default: {d.leak_rate})")
    group.add_argument("--leak-rate-min", type=float, default=d.leak_rate_min,
                       help="spread the leak rates geometrically over the units, from this to --leak-rate "
                            "(default: none, every unit leaks at --leak-rate)")
    group.add_argument("--input-scaling", type=float, default=d.input_scaling,
                       help=f"scale of W_in (default: {d.input_scaling})")
    group.add_argument("--connectivity", type=float, default=d.connectivity,
                       help=f"fraction of nonzero W_r entries (default: {d.connectivity})")
    group.add_argument("--activation", default=d.activation, choices=list(ACTIVATIONS),
                       help=f"unit nonlinearity (default: {d.activation})")
    if with_seed:
        group.add_argument("--reservoir-seed", type=int, default=d.seed,
                           help=f"seed of the reservoir (default: {d.seed})")


def reservoir_config_from(args: argparse.Namespace) -> ReservoirConfig:
    return ReservoirConfig(units=args.units, spectral_radius=args.spectral_radius, leak_rate=args.leak_rate,
                           input_scaling=args.input_scaling, connectivity=args.connectivity,
                           activation=args.activation, seed=getattr(args, "reservoir_seed", 0),
                           leak_rate_min=getattr(args, "leak_rate_min", None))


def ran_config_from(args: argparse.Namespace, **fields) -> RanConfig:
    """The RAN config of the flags :func:`add_model_arguments` and :func:`add_reservoir_arguments` define;
    ``fields`` are a command's own (``lora_rank``, ``value_read``...)."""
    return RanConfig(mode=args.mode, layer=args.layer, n_slots=args.slots, summary=args.summary, write=args.write,
                     idle_write=args.idle_write, running_units=args.running_units, running_read=args.running_read,
                     running_clock=args.running_clock,
                     recall=args.recall, drive=args.drive, read_places=args.read_places, read_from=args.read_from,
                     slot_order=args.slot_order, reply_places=args.reply_places, whiten=args.whiten,
                     gate_context=args.gate_context, running_gate_context=args.running_gate_context,
                     reservoir=reservoir_config_from(args), **fields)


def add_overwrite_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--overwrite", action="store_true",
                        help="replace results files and artifacts that already exist (default: refuse, before any "
                             "work starts)")


def check_outputs(args: argparse.Namespace, results: Iterable[Path] = (), artifacts: Iterable[Path] = ()) -> None:
    """Before any work starts: ``--out`` (and ``--save``) are directories that can be written, and no results
    file or artifact there is replaced unless ``--overwrite`` was given."""
    check_directory(args.out, "--out")
    for path in results:
        check_new(path, "--out", args.overwrite)
    if getattr(args, "save", None):
        check_directory(args.save, "--save")
        artifacts = list(artifacts)
        for index, path in enumerate(artifacts):
            if path in artifacts[:index]:
                raise ConfigError(f"--save: two runs would be saved as the same artifact {path} (its name does not "
                                  "show every setting varied): save fewer runs at a time")
            check_new(path, "--save", args.overwrite, what="artifact")


def check_engine_outputs(args: argparse.Namespace, results: Iterable[Path], records: Path, members: list[dict],
                         artifacts: list[Path | None] | None = None) -> None:
    """``check_outputs`` for an experiment on the engine (``ran.engine``), whose runs leave one record each under
    ``records``: a rerun without ``--overwrite`` resumes, keeping the finished runs and their artifacts
    (``artifacts[i]`` is member i's), and the artifact an unfinished run saved of itself before it stopped
    (``ran.runner.saved_run_of``); ``--overwrite`` deletes the records, and the ``run.json`` that marks such an
    artifact finished, so every run trains again."""
    from ran.engine import RecordStore, member_key, spec_of
    from ran.runner import ARTIFACT_RUN_FILE, saved_run_of

    finished = set() if args.overwrite else RecordStore(records).keys()
    artifacts = artifacts or [None] * len(members)
    unfinished = [(artifact, member) for artifact, member in zip(artifacts, members, strict=True)
                  if artifact is not None and member_key(member) not in finished]
    resumable = [artifact for artifact, member in unfinished if saved_run_of(spec_of(member), artifact) is not None]
    check_outputs(args, results, [artifact for artifact, _ in unfinished
                                  if args.overwrite or artifact not in resumable])
    if args.overwrite:
        for artifact in resumable:
            (artifact / ARTIFACT_RUN_FILE).unlink()
        if records.is_dir():
            shutil.rmtree(records)


def results_name(args: argparse.Namespace, default: str) -> str:
    """``--name`` (a plain file name, which cannot leave ``--out``), else the experiment's default name."""
    return check_name(args.name, "--name") if args.name else default


def add_backend_arguments(parser: argparse.ArgumentParser, default_threads: int | None = None) -> None:
    """Where an experiment's runs execute (``ran.engine``): in this process, on local Ray workers, or a cluster."""
    where = parser.add_argument_group("where the runs execute")
    where.add_argument("--workers", type=int, default=0,
                       help="run on N local Ray workers (ray.init with N CPUs) instead of in this process")
    where.add_argument("--ray-address", metavar="HOST:PORT",
                       help="run on an existing Ray cluster (started with `ray start --head --port=6379`); each run "
                            "asks for one GPU when the cluster has GPUs")
    where.add_argument("--batch-runs", type=int, default=1, metavar="N",
                       help="train up to N runs that share a shape (mode, layer, slots, read, reservoir size, steps) "
                            "in one batch on the shared backbone (ran.batched; on Ray, one batch per task); each "
                            "record equals the run's alone up to float rounding (default: 1, each run alone)")
    threads = ("torch's default in this process, 1 per Ray worker" if default_threads is None
               else str(default_threads))
    where.add_argument("--threads", type=int, default=default_threads,
                       help=f"CPU threads per run; results depend on it (the order of sums in a matmul) (default: "
                            f"{threads})")


def backend_from(args: argparse.Namespace):
    """The engine's backend of the flags of :func:`add_backend_arguments` (their ranges: ran.cli.validate)."""
    from ran.engine import Backend

    return Backend(workers=args.workers, ray_address=args.ray_address, batch=args.batch_runs)


def add_track_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("tracking")
    group.add_argument("--track", choices=list(TRACKERS),
                       help="also log every run (settings, loss curve, scores, artifact path) for a dashboard; off "
                            f"unless given (open it with: tensorboard --logdir {DEFAULT_DIRECTORY})")
    group.add_argument("--track-dir", default=DEFAULT_DIRECTORY,
                       help="where --track writes, one folder per results name and one per run "
                            "(default: %(default)s, not tracked by git)")


def track_config_from(args: argparse.Namespace, experiment: str) -> TrackConfig | None:
    """``--track``'s settings, checked before any work starts; None when tracking is off."""
    if not args.track:
        return None
    check_directory(args.track_dir, "--track-dir")
    if importlib.util.find_spec("tensorboard") is None:
        raise ConfigError("--track tensorboard needs the tensorboard package: pip install 'ran[track]'")
    return TrackConfig(args.track, args.track_dir, re.sub(r"[^A-Za-z0-9._-]+", "_", experiment).strip("._-")[:64]
                       or "runs")


def add_format_arguments(parser, default: PassFormat | None = None) -> None:
    """How every training command renders passes (``ran.passes``): --format, --idle-text, --tick."""
    default = default or PassFormat()
    parser.add_argument("--format", default=default.kind, choices=FORMATS,
                        help="how a pass is rendered: the text verbatim, or a ChatML turn as ran chat renders it "
                             "(default: %(default)s)")
    parser.add_argument("--idle-text", default=default.idle_text, help="what an idle tick reads (default: a newline)")
    parser.add_argument("--tick", default=default.tick, choices=TICKS,
                        help="what an idle tick reads: the idle text (text), or an empty user turn (turn, chat only), "
                             "so that a tick on a wiped context does not end at the first position, where the memory "
                             "barely moves the reply (default: %(default)s)")


def pass_format_from(args: argparse.Namespace) -> PassFormat:
    return PassFormat(args.format, idle_text=args.idle_text, tick=args.tick)
