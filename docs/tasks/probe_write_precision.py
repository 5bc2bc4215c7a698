"""Where does the memory's write open on sentences that store nothing? A probe of the write switch alone.

The recipe's write switch is one linear unit on layer L's RMS-normalised input at the prompt's end
(``ran.model``, ``write="pass-switched"``), zero-initialised and taught by binary cross-entropy on the passes
whose read labels say whether they store a value; nothing else moves it (the read, the slots and the recall
do not reach layer L's input). So its training can be replayed on the frozen model's features in minutes:
this probe draws episodes as ``ran.tasks.memory`` does (a store, 0-1 intervening passes of the three kinds,
the recall), averages the write loss per episode as ``ran.training.run_episodes`` does, and steps AdamW with
the trainer's schedule (300 steps of 32 episodes, lr 1e-2, 5 warmup steps, cosine decay, clip 1.0), then counts
where the switch opens: held-out stores (held-out values in held-out phrasings), the evaluation distractors,
which a memory reads between its store and its recall, and 60 everyday statements no training reads
(``write-validation.json``; an evaluation reads them only as ``statements-between.json``, run once after the
margin below was chosen).

It replays the built-in distractor pool (64 sentences, 1 in 3 intervening passes) against artifacts' own
switches (r65's seeds opened on 3, 4 and 6 of the 40 evaluation distractors, README "Where the misses come from"),
and the arms that might shut it there: a larger pool (``ran.tasks.memory_texts.EVERYDAY_DISTRACTORS``, 185 more everyday
sentences, none naming a person, place or number; the recipe's pool since r68, and docs/tasks/write-precision.json
as a task file for r67), more distractors among the intervening passes, the two together, and a switch with 64
hidden ReLU units (``RanConfig.write_hidden``). Idle ticks are replayed as an empty user turn without the context
before them, and ordinary turns without theirs.

    python docs/tasks/probe_write_precision.py   # writes docs/tasks/write-precision-probe.json

With ``--artifact DIR`` (a ``ran remember`` artifact) it reads that artifact's own write switch instead, on the
same passes, and counts where it opens at a range of margins (``RanConfig.write_margin``: the write opens where
its logit exceeds the margin). The margin is chosen on sentences no training reads
(``write-validation.json``, 60 everyday statements, half of them in the first person): the smallest margin at
which the write opens on at most 1 in 40 of them (``VALIDATION_RATE``). It also counts the 185 added sentences
(read in training only by an artifact trained on the larger pool). ``ran eval --write-margin`` then measures what
it does to recall.

    python docs/tasks/probe_write_precision.py --artifact DIR --out FILE   # default docs/tasks/write-margin-probe.json
"""

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from probe_switches import switch_inputs  # a sibling script: docs/tasks is on the path when run as below

from ran.artifact import artifact_pass_format
from ran.loading import load_model
from ran.model import ReservoirModel, switch_gate
from ran.passes import PassFormat, Renderer
from ran.provenance import environment
from ran.remember import builtin_task
from ran.tasks.memory import SLOT, MemoryTask
from ran.tasks.memory_texts import EVERYDAY_DISTRACTORS
from ran.tasks.texts import EVAL_DISTRACTORS, TRAIN_DISTRACTORS
from ran.training import cosine_schedule

HERE = Path(__file__).resolve().parent
OUT = HERE / "write-precision-probe.json"  # beside this script: not a results file of ran
MARGIN_OUT = HERE / "write-margin-probe.json"
MARGINS = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0)
VALIDATION_RATE = 1 / 40  # the most a chosen margin lets the write open on the validation sentences
VALIDATION = HERE / "write-validation.json"  # 60 more everyday statements, read by no training and no evaluation
VALUES_PER_TEMPLATE = 3  # training values stored in each training phrasing (drawn per episode from these)
HELDOUT_VALUES = 10  # held-out values per kind, each in every held-out phrasing
STEPS, EPISODES, LR, WARMUP = 300, 32, 1e-2, 5
SEEDS = (0, 1, 2)
# name -> (distractor pool, weights of the intervening kinds (distractor, idle, turn), the switch's hidden units)
ARMS = {
    "built-in pool (64), kinds 1:1:1, linear": ("builtin", (1.0, 1.0, 1.0), 0),
    "larger pool (249), kinds 1:1:1, linear": ("larger", (1.0, 1.0, 1.0), 0),
    "built-in pool (64), kinds 3:1:1, linear": ("builtin", (3.0, 1.0, 1.0), 0),
    "larger pool (249), kinds 3:1:1, linear": ("larger", (3.0, 1.0, 1.0), 0),
    "built-in pool (64), kinds 1:1:1, 64 hidden": ("builtin", (1.0, 1.0, 1.0), 64),
    "larger pool (249), kinds 1:1:1, 64 hidden": ("larger", (1.0, 1.0, 1.0), 64),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact", help="read this ran remember artifact's write switch instead of replaying one")
    parser.add_argument("--out", default=MARGIN_OUT, help="with --artifact: where the counts go (default: %(default)s)")
    args = parser.parse_args()
    if args.artifact:
        return artifact_margins(Path(args.artifact), Path(args.out))
    model, tokenizer = load_model("smollm2-135m")
    renderer = Renderer(PassFormat("chat"), tokenizer)
    layer = model.config.num_hidden_layers // 2
    larger = MemoryTask.train_distractors  # the built-in 64 and the 185 everyday statements
    task = builtin_task(tokenizer)
    heldout_words = {value for values in task.heldout_values.values() for value in values
                     if len(value.split()) == 1}
    leaks = sorted({w for s in larger for w in s.lower().rstrip(".").split()} & {w.lower() for w in heldout_words})
    assert not leaks, f"the larger pool names held-out values: {leaks}"

    def features(texts: list[str]) -> torch.Tensor:
        return switch_inputs(model, renderer, layer, texts)

    generator = torch.Generator().manual_seed(0)
    stores = []  # per kind: each training phrasing's features with VALUES_PER_TEMPLATE training values
    for kind in task.kinds:
        values = task.values[kind]
        texts = [template.replace(SLOT, values[int(torch.randint(len(values), (), generator=generator))])
                 for template in task.store_templates[kind] for _ in range(VALUES_PER_TEMPLATE)]
        stores.append(features(texts))
    stores = torch.cat(stores)
    heldout_store_texts = [template.replace(SLOT, value) for kind in task.kinds
                           for template in task.heldout_store_templates[kind]
                           for value in task.heldout_values[kind][:HELDOUT_VALUES]]
    recalls = features([t for kind in task.kinds for t in task.recall_templates[kind]])
    turns = features(list(task.turns))
    idle = features([""])
    pools = {"builtin": features(list(TRAIN_DISTRACTORS)), "larger": features(list(larger))}
    validation = json.loads(VALIDATION.read_text())["sentences"]
    held = {"held-out stores": features(heldout_store_texts), "validation sentences": features(validation),
            "evaluation distractors": features(list(EVAL_DISTRACTORS)),
            "held-out turns": features(list(task.heldout_turns)),
            "held-out recalls": features([t for kind in task.kinds for t in task.heldout_recall_templates[kind]])}

    def train(pool: torch.Tensor, weights: tuple[float, ...], hidden: int, seed: int) -> torch.nn.Module:
        unit = switch_gate(stores.shape[1], "cpu", hidden, seed)  # the model's own switch
        optimiser = torch.optim.AdamW(unit.parameters(), lr=LR, weight_decay=0.0)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: cosine_schedule(step, STEPS, WARMUP))
        draw = torch.Generator().manual_seed(seed)
        kinds = torch.tensor(weights, dtype=torch.float64)
        fillers = (pool, idle, turns)
        for _ in range(STEPS):
            losses = []
            for _ in range(EPISODES):
                passes = [stores[int(torch.randint(len(stores), (), generator=draw))]]
                labels = [1.0]
                if torch.randint(2, (), generator=draw):  # 0-1 intervening passes
                    rows = fillers[int(torch.multinomial(kinds, 1, generator=draw))]
                    passes.append(rows[int(torch.randint(len(rows), (), generator=draw))])
                    labels.append(0.0)
                passes.append(recalls[int(torch.randint(len(recalls), (), generator=draw))])
                labels.append(0.0)
                logits = unit(torch.stack(passes))[:, 0]
                losses.append(F.binary_cross_entropy_with_logits(logits, torch.tensor(labels)))  # the episode's mean
            optimiser.zero_grad()
            torch.stack(losses).mean().backward()
            torch.nn.utils.clip_grad_norm_(unit.parameters(), 1.0)
            optimiser.step()
            schedule.step()
        return unit

    rows = []
    for arm, (pool, weights, hidden) in ARMS.items():
        for seed in SEEDS:
            unit = train(pools[pool], weights, hidden, seed)
            with torch.no_grad():
                opened = {name: (unit(rows_)[:, 0] > 0) for name, rows_ in held.items()}
            row = {"arm": arm, "seed": seed, "opens": {name: float(o.float().mean()) for name, o in opened.items()},
                   "opened distractors": [t for t, o in zip(EVAL_DISTRACTORS, opened["evaluation distractors"].tolist(),
                                                            strict=True) if o],
                   "shut held-out stores": int((~opened["held-out stores"]).sum())}
            rows.append(row)
            print(f"{arm:42s} seed {seed}: opens on held-out stores {row['opens']['held-out stores']:.2f}, "
                  f"evaluation distractors {row['opens']['evaluation distractors']:.3f} "
                  f"({len(row['opened distractors'])}: {'; '.join(row['opened distractors'])}), held-out turns "
                  f"{row['opens']['held-out turns']:.2f}, held-out recalls {row['opens']['held-out recalls']:.2f}, "
                  f"validation sentences {row['opens']['validation sentences']:.3f}")
    OUT.write_text(json.dumps({"experiment": "write-precision-probe", **environment(), "layer": layer,
                               "steps": STEPS, "episodes_per_step": EPISODES,
                               "held_out_stores": len(heldout_store_texts),
                               "rows": rows}, indent=1) + "\n")
    print(f"wrote {OUT}")


def artifact_margins(directory: Path, out: Path) -> None:
    """Where the artifact's own write opens, per margin, on the validation sentences and the evaluation's passes."""
    base, tokenizer = load_model("smollm2-135m")  # what ran remember trains on
    model = ReservoirModel.from_pretrained(base, directory)
    renderer = Renderer(artifact_pass_format(directory), tokenizer)
    task = builtin_task(tokenizer)
    added = list(EVERYDAY_DISTRACTORS)
    groups = {
        "validation sentences": json.loads(VALIDATION.read_text())["sentences"],
        "added sentences": added,
        "evaluation distractors": list(EVAL_DISTRACTORS),
        "held-out turns": list(task.heldout_turns),
        "held-out values, training phrasings": [
            str(task.store_templates[kind][i % len(task.store_templates[kind])]).replace(SLOT, value)
            for kind in task.kinds for i, value in enumerate(task.heldout_values[kind][:HELDOUT_VALUES * 4])],
        "held-out values, held-out phrasings": [
            template.replace(SLOT, value) for kind in task.kinds for template in task.heldout_store_templates[kind]
            for value in task.heldout_values[kind][:HELDOUT_VALUES]],
    }

    @torch.no_grad()
    def write_logits(texts: list[str]) -> torch.Tensor:
        return torch.tensor([float(model(torch.tensor([renderer.turn(text)]), read_only=True,
                                         state=model.reservoir.initial_state(1, "cpu")).write_logits[0])
                             for text in texts])

    logits = {name: write_logits(texts) for name, texts in groups.items()}
    rows = [{"margin": margin, "opens": {name: float((values > margin).float().mean()) for name, values in
                                         logits.items()}} for margin in MARGINS]
    chosen = next((row["margin"] for row in rows if row["opens"]["validation sentences"] <= VALIDATION_RATE), None)
    print(f"{'margin':>6}  " + "  ".join(f"{name:>36}" for name in groups))
    for row in rows:
        print(f"{row['margin']:6.1f}  " + "  ".join(f"{row['opens'][name]:36.3f}" for name in groups))
    print(f"chosen on the validation sentences (opens on <= {VALIDATION_RATE:.3f}): {chosen}")
    opened = {name: [(round(float(v), 2), t) for v, t in sorted(zip(logits[name].tolist(), texts, strict=True),
                                                                 reverse=True) if v > 0]
              for name, texts in groups.items() if name in ("evaluation distractors", "validation sentences",
                                                             "added sentences")}
    out.write_text(json.dumps({"experiment": "write-margin-probe", **environment(), "artifact": str(directory),
                               "counts": {name: len(texts) for name, texts in groups.items()},
                               "rows": rows, "chosen": chosen, "validation_rate": VALIDATION_RATE,
                               "opened": opened}, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
