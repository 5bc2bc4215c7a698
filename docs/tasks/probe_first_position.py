"""Can the memory move a reply whose prompt ends at the first position? A probe of the kv slots alone.

Every trained timed-task arm says the wrong word at N = 1 (0 of 8 in every arm and seed), where the due tick is
also the tick on which the context was wiped: in the text tick (``PassFormat.tick`` "text") that pass reads the
idle text alone, one token, so the prompt ends at position 0. There a causal LM's residual stream holds the first
token's massive activation. This probe measures, on the frozen SmolLM2-135M wrapped as the battery wraps it (kv,
2,048 units, 8 slots) with a random readout, how far the carried state moves the next-token distribution at the
end of each tick rendering: KL(p(. | zero state) || p(. | a random state)) over random states, and the residual
norm at layer L at the prompt's end, and how often the state changes the most likely next token, at two scales of
the random readout. Untrained, in seconds:

    python docs/tasks/probe_first_position.py   # writes docs/tasks/first-position-probe.json
"""

import json
import statistics
from pathlib import Path

import torch

from ran.loading import load_model
from ran.model import RanConfig, wrap
from ran.passes import PassFormat, Renderer
from ran.provenance import environment
from ran.reservoir import ReservoirConfig

OUT = Path(__file__).resolve().parent / "first-position-probe.json"  # beside this script: not a results file of ran
STATES = 16  # random states per rendering
READOUT_STDS = (0.02, 0.2)  # the random readout's weights (the slots' keys and values it writes)
STATE_STD = 0.5  # the random states' units (tanh units: within (-1, 1) after clamping)


def renderings(text: Renderer, turn: Renderer) -> dict[str, list[int]]:
    """The prompt of a due tick in each rendering: on a wiped context (timed N = 1), and after one silent tick."""
    silent = [text.silence]
    return {
        "text tick on a wiped context (N = 1)": text.idle_tokens,
        "text tick after a silent tick (N = 2)": text.idle_tokens + text.close_reply(silent) + text.idle_tokens,
        "turn tick on a wiped context (N = 1)": turn.idle_tokens,
        "turn tick after a silent turn tick (N = 2)": turn.idle_tokens + turn.close_reply(silent) + turn.idle_tokens,
        "a user turn on a wiped context": turn.turn("What was the word?"),
    }


def main() -> None:
    torch.manual_seed(0)
    base, tokenizer = load_model()
    model = wrap(base, RanConfig(mode="kv", n_slots=8, reservoir=ReservoirConfig(units=2048)))
    layer = model.config.layer  # resolved by wrap (the middle layer when not given)
    text = Renderer(PassFormat("chat"), tokenizer)
    turn = Renderer(PassFormat("chat", tick="turn"), tokenizer)
    states = (torch.randn(STATES, model.reservoir.units) * STATE_STD).clamp(-1, 1)
    readouts = {}
    for scale in READOUT_STDS:
        generator = torch.Generator().manual_seed(1)
        readouts[scale] = [torch.randn(p.shape, generator=generator) * scale for p in model.trainable_parameters()]
    rows = []
    for name, prompt in renderings(text, turn).items():
        ids = torch.tensor([prompt])
        row = {"rendering": name, "tokens": len(prompt)}
        for scale, weights in readouts.items():
            with torch.no_grad():
                for parameter, weight in zip(model.trainable_parameters(), weights, strict=True):
                    parameter.copy_(weight)
            norm = {}

            def measure(module, args, output, norm=norm) -> None:
                hidden = output[0] if isinstance(output, tuple) else output
                norm.setdefault("h", float(hidden[0, -1].norm()))

            hook = base.model.layers[layer].register_forward_hook(measure)
            with torch.no_grad():
                bare = model(ids, state=torch.zeros(1, model.reservoir.units)).logits[0, -1].log_softmax(-1)
                hook.remove()
                divergences, changed = [], 0
                for state in states:
                    moved = model(ids, state=state[None]).logits[0, -1].log_softmax(-1)
                    divergences.append(float((bare.exp() * (bare - moved)).sum()))
                    changed += int(moved.argmax() != bare.argmax())
            row["residual_norm_at_layer"] = round(norm["h"], 1)
            row[f"readout_std_{scale}"] = {"kl_median": statistics.median(divergences), "kl_max": max(divergences),
                                           "top_token_changed": changed / STATES}
            print(f"{name:45s} {len(prompt):3d} tokens  |h| {norm['h']:9.1f}  readout std {scale}: KL median "
                  f"{statistics.median(divergences):.2e}, top token changed {changed}/{STATES}")
        rows.append(row)
    OUT.write_text(json.dumps({"experiment": "first-position-probe", **environment(), "layer": layer,
                               "states": STATES, "state_std": STATE_STD, "rows": rows}, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
