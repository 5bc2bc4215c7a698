"""Can a slot write a token into the residual stream so that the model says it? A probe of the reply side alone.

``value_read`` "decoded" reads each place's token embedding back from the state, and held-out tokens come back
from the state in closed form (docs/tasks/places-probe.json); the trained map from that embedding to a slot's
value still learned only the value's form (README, One memory, ``r31``, ``r32``). This probe asks whether any
map is needed: with no training, add a token's unit embedding, scaled to a multiple of the residual's own norm,
to one layer's attention output at the reply's first position (where a slot's attention lands) and see whether
the model's next token is that token. At the recipe's layer (the middle) it is also projected onto what kv
slots can write through ``o_proj`` (each key-value head's value is shared by its query heads).

SmolLM2-135M-Instruct ties its input and output embeddings, so at the last layer the embedding is the output
direction; the question is how much of it survives the layers above.

    python docs/tasks/probe_copy.py   # writes docs/tasks/copy-probe.json (a few minutes on 2 cores)
"""

import json
import random
import time
from pathlib import Path

import torch

from ran.architectures import attention_module
from ran.loading import load_model
from ran.provenance import environment

OUT = Path(__file__).resolve().parent / "copy-probe.json"  # beside this script: not a results file of ran
LAYERS = (15, 20, 25, 29)  # 15 = the middle of 30, the recipe's layer
SCALES = (0.25, 1.0, 4.0)  # times the norm of the residual at that layer and position
TOKENS = 100  # of each kind
PROMPT = "What is my friend's name?"


def main() -> None:
    started = time.perf_counter()
    torch.manual_seed(0)
    model, tokenizer = load_model("smollm2-135m", dtype="float32")
    model.eval()
    embeddings = model.get_input_embeddings().weight.detach()
    unit = embeddings / embeddings.norm(dim=-1, keepdim=True)
    text = tokenizer.apply_chat_template([{"role": "user", "content": PROMPT}], tokenize=False,
                                         add_generation_prompt=True)
    ids = tokenizer(text, return_tensors="pt").input_ids
    names = [tokenizer.decode([t]) for t in range(len(tokenizer))]
    rng = random.Random(0)
    kinds = {"whole words (' house')": rng.sample([t for t, s in enumerate(names) if s[:1] == " " and
                                                    s[1:].isalpha() and len(s) > 3], TOKENS),
             "word pieces ('ling')": rng.sample([t for t, s in enumerate(names) if s.isalpha()], TOKENS)}
    with torch.no_grad():
        hidden = model(ids, output_hidden_states=True).hidden_states  # hidden[i] = the input of layer i
    norms = {layer: float(hidden[layer + 1][0, -1].norm()) for layer in LAYERS}

    config = model.config
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    head_dim = config.hidden_size // heads
    o_proj = attention_module(model, LAYERS[0]).o_proj.weight.detach()  # (d, heads * head_dim)
    per_head = o_proj.view(-1, heads, head_dim)
    group = heads // kv_heads
    writable = torch.cat([per_head[:, h * group:(h + 1) * group].sum(1) for h in range(kv_heads)], dim=1)
    slot_projection = writable @ torch.linalg.pinv(writable)  # onto what kv slots can add through o_proj

    added: dict[str, torch.Tensor] = {}

    def add_at_last(module, inputs, output):
        out = output[0].clone()
        out[:, -1] += added["vector"]
        return (out, *output[1:])

    rows = []
    for layer in LAYERS:
        projections = {"full": None, "kv slots": slot_projection} if layer == LAYERS[0] else {"full": None}
        hook = attention_module(model, layer).register_forward_hook(add_at_last)
        try:
            for kind, tokens in kinds.items():
                for label, projection in projections.items():
                    for scale in SCALES:
                        vectors = scale * norms[layer] * unit[tokens]
                        added["vector"] = (vectors @ projection.T if projection is not None else vectors)
                        with torch.no_grad():
                            said = model(ids.expand(len(tokens), -1)).logits[:, -1].argmax(-1)
                        right = int((said == torch.tensor(tokens)).sum())
                        rows.append({"layer": layer, "tokens": kind, "added": label, "scale": scale,
                                     "said": round(right / len(tokens), 3),
                                     "examples": [[names[t], names[s]] for t, s in zip(tokens[:4], said[:4].tolist(),
                                                                                       strict=True)]})
                        print(json.dumps(rows[-1]), flush=True)
        finally:
            hook.remove()
    OUT.write_text(json.dumps({"what": __doc__.split("\n\n")[0], "prompt": PROMPT, "residual_norms": norms,
                               "rows": rows, "seconds": round(time.perf_counter() - started),
                               "provenance": environment()}, indent=1) + "\n")


if __name__ == "__main__":
    main()
