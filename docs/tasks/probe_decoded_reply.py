"""Store and reply together, with no gradient training: does a held-out value come back whole when each place's
decoded token is written into layer L at the position that says it?

The two probes before it took one side each. ``probe_places.py``: one store's state holds the tokens of values
never fit on, read back by a ridge decoder fit in closed form (``ran.decoding``). ``probe_copy.py``: a token's
unit embedding added to layer 15's attention output at a few times the residual's norm makes the model say it,
but not through one slot value per key-value head. This probe joins them: the state a store of each held-out
value writes (the recipe's reservoir, the ordered read of 8 places) is decoded, and greedy decoding of the reply
to the kind's recall question (chat format, e.g. "What is my friend's name?") adds place j's decoded vector, times
``scale`` times the residual's norm there, at the position that says the reply's j-th token. A value counts when
the reply is exactly its tokens; ``stops`` is the share of those followed by the end of the turn; ``text_exact``
compares the reply up to the end of the turn with the value as text without whitespace, ``text_begins`` only its
beginning. The control decodes the wiped (zero) state. Two decoders: one fit to zeros past the value's end
(``ran.decoding``'s targets), one fit to the end-of-turn token's embedding at the place after it, so that the
stop, too, is read from the state.

It is an upper bound for a readout that writes the whole residual at layer L (``additive``'s write, or slots
with a query head each); kv slots with one value per key-value head cannot write it (``probe_copy.py``).

    python docs/tasks/probe_decoded_reply.py   # writes docs/tasks/decoded-reply-probe.json (~10 min on 2 cores)
"""

import json
import time
from itertools import product
from pathlib import Path

import torch

from ran.architectures import attention_module
from ran.decoding import fit_place_decoder, store_states
from ran.loading import load_model
from ran.provenance import environment
from ran.remember import RECIPE, builtin_task
from ran.reservoir import Reservoir

OUT = Path(__file__).resolve().parent / "decoded-reply-probe.json"  # beside this script: not a results file of ran
PLACES = 8
LAYER = 15  # the middle of SmolLM2-135M's 30 layers, the recipe's
COINED = 6000  # coined words fit on beside the names (places-probe.json: the fit that names held-out names)
SCALES = (2.0, 4.0, 8.0)
SCORED = ("name", "number", "place")
RECALL = {"name": "What is my friend's name?", "number": "What was the number?", "place": "Which place did I mention?"}
MAX_REPLY = PLACES + 2
DECODERS = {"zero past the end": False, "the end of the turn, then zero": True}


def share(hits: list[bool]) -> float:
    return round(sum(hits) / len(hits), 3)


def squeezed(text: str) -> str:
    """The text without whitespace: ``text_*`` compare replies so, since a unit embedding hardly tells " Green"
    from "Green"."""
    return "".join(text.split())


def main() -> None:
    started = time.perf_counter()
    torch.manual_seed(0)
    model, tokenizer = load_model("smollm2-135m", dtype="float32")
    model.eval()
    embeddings = model.get_input_embeddings().weight.detach().float()
    unit = embeddings / embeddings.norm(dim=-1, keepdim=True)
    reservoir = Reservoir(RECIPE.ran.reservoir, embeddings.shape[1] * PLACES)
    stop = tokenizer.convert_tokens_to_ids("<|im_end|>")

    def encode(values) -> list[list[int]]:
        return [tokenizer.encode(f" {value}", add_special_tokens=False) for value in values]

    def states_of(values: list[list[int]]) -> torch.Tensor:
        return store_states(reservoir.step, reservoir.initial_state, embeddings, values, PLACES)

    task = builtin_task(tokenizer, words=COINED, kinds=("name", "coined", "number", "place"))
    fitted = encode(v for kind in ("name", "coined", "number", "place") for v in task.values[kind])
    fitted_states = states_of(fitted)
    decoders = {}
    for decoder, ends in DECODERS.items():  # the targets past the value: zeros, or the end of the turn first
        decoders[decoder] = fit_place_decoder(fitted_states, [v + [stop] for v in fitted] if ends else fitted, unit,
                                              PLACES)
        print(json.dumps({"decoder": decoder, **decoders[decoder][3]}), flush=True)

    added: dict[str, torch.Tensor] = {}

    def add_to_reply(module, inputs, output):  # added["vectors"]: (B, r, d) for the sequence's last r positions
        vectors = added["vectors"]
        out = output[0].clone()
        out[:, -vectors.shape[1]:] += vectors.to(out.dtype)
        return (out, *output[1:])

    def reply(prompt_ids: torch.Tensor, decoded: torch.Tensor, norm: float, scale: float) -> list[list[int]]:
        """Greedy replies of every row, place j's decoded vector added where the reply's j-th token is said."""
        zero = decoded.new_zeros(decoded.shape[0], MAX_REPLY - PLACES, decoded.shape[2])
        places = torch.cat([decoded, zero], dim=1) * scale * norm  # (B, MAX_REPLY, d)
        ids, cache, said = prompt_ids.expand(decoded.shape[0], -1), None, []
        for j in range(MAX_REPLY):  # the cache keeps each earlier position's addition, as a re-forward would
            added["vectors"] = places[:, j:j + 1]
            with torch.no_grad():
                out = model(ids, past_key_values=cache, use_cache=True)
            cache, ids = out.past_key_values, out.logits[:, -1:].argmax(-1)
            said.append(ids)
        return torch.cat(said, dim=1).tolist()

    prompts, norms = {}, {}
    for kind in SCORED:  # the residual's norm after layer L where the reply's first token is said, untouched
        text = tokenizer.apply_chat_template([{"role": "user", "content": RECALL[kind]}], tokenize=False,
                                             add_generation_prompt=True)
        prompts[kind] = tokenizer(text, return_tensors="pt").input_ids
        with torch.no_grad():
            hidden = model(prompts[kind], output_hidden_states=True).hidden_states
        norms[kind] = float(hidden[LAYER + 1][0, -1].norm())
    rows = []
    hook = attention_module(model, LAYER).register_forward_hook(add_to_reply)
    try:
        for kind in SCORED:
            prompt_ids, norm = prompts[kind], norms[kind]
            values = encode(task.heldout_values[kind])
            meant = [squeezed(tokenizer.decode(v)) for v in values]
            carried = states_of(values)
            conditions = {"carried": carried, "wiped": torch.zeros_like(carried)}
            for (decoder, (weight, state_mean, target_mean, _)), (condition, states) in product(decoders.items(),
                                                                                                  conditions.items()):
                decoded = ((states - state_mean) @ weight + target_mean).view(len(values), PLACES, -1)
                for scale in SCALES:
                    replies = reply(prompt_ids, decoded, norm, scale)
                    whole = [r[:len(v)] == v for r, v in zip(replies, values, strict=True)]
                    stops = [r[len(v)] == stop for r, v, w in zip(replies, values, whole, strict=True) if w]
                    said = [squeezed(tokenizer.decode(r[:r.index(stop)] if stop in r else r)) for r in replies]
                    rows.append({"kind": kind, "decoder": decoder, "condition": condition, "scale": scale,
                                 "values": len(values),
                                 "whole": share(whole),
                                 "stops": round(sum(stops) / max(len(stops), 1), 3),
                                 "text_begins": share([a.startswith(b) for a, b in zip(said, meant, strict=True)]),
                                 "text_exact": share([a == b for a, b in zip(said, meant, strict=True)]),
                                 "examples": [[tokenizer.decode(v), tokenizer.decode(r)]
                                              for v, r in list(zip(values, replies, strict=True))[:3]]})
                    print(json.dumps(rows[-1]), flush=True)
    finally:
        hook.remove()
    OUT.write_text(json.dumps({"what": __doc__.split("\n\n")[0], "layer": LAYER, "places": PLACES,
                               "decoders": {name: fit[3] for name, fit in decoders.items()}, "residual_norms": norms,
                               "reservoir": RECIPE.ran.reservoir.to_dict(), "rows": rows,
                               "seconds": round(time.perf_counter() - started), "provenance": environment()},
                              indent=1) + "\n")


if __name__ == "__main__":
    main()
