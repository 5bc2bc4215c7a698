"""How well does each read carry a word the readout never saw? (the analysis behind README, Open vocabulary)

For 2000 training and 200 held-out words of the vocabulary split 0, take what the reservoir would read
from the storing pass (layer 15 of SmolLM2-135M at the last token), one reservoir step from the zero
state (leak 1.0, K=2048, seed 0), fit a ridge map from the state to the word's input embedding on the
training words, and score the held-out words by the nearest embedding over the whole vocabulary.
Run from the repository root: ``python results/openvocab/decodability.py``; prints one line per row.
"""

import torch

from ran.loading import load_model
from ran.reservoir import Reservoir, ReservoirConfig
from ran.tasks import RecallTask
from ran.tasks.texts import words_of
from ran.tasks.vocab import KeyPool, resolve_keys

LAYER, UNITS, RIDGE = 15, 2048, 0.1
model, tokenizer = load_model()
model.eval()
task = RecallTask()  # the split `ran crosspass --key-pool vocab` draws: the task's own words are excluded
texts = [task.store_template, task.recall_template, *task.train_distractors, *task.eval_distractors]
excluded = set().union(*(words_of(t.replace("{key}", "")) for t in texts))
train, heldout = resolve_keys(KeyPool("vocab", train=2000, heldout=200), tokenizer, excluded)
embeddings = model.get_input_embeddings().weight.detach()
unit_embeddings = torch.nn.functional.normalize(embeddings, dim=-1)


def token_ids(words):
    return torch.tensor([tokenizer.encode(" " + w, add_special_tokens=False)[0] for w in words])


def read(template, words):
    """Layer-L hidden state at the last token of each storing pass, (N, d)."""
    rows = []
    for start in range(0, len(words), 100):
        batch = tokenizer([template.format(w) for w in words[start:start + 100]], return_tensors="pt",
                          padding=True, padding_side="left")
        positions = (batch.attention_mask.cumsum(-1) - 1).clamp(min=0)
        with torch.no_grad():
            hidden = model(**batch, position_ids=positions, output_hidden_states=True).hidden_states[LAYER]
        rows.append(hidden[:, -1])
    return torch.cat(rows)


def heldout_accuracy(features_train, features_heldout):
    mean, scale = features_train.mean(0), features_train.std(0) + 1e-6
    a, b = ((features_train - mean) / scale).double(), ((features_heldout - mean) / scale).double()
    target = embeddings[token_ids(train)].double()
    weights = torch.linalg.solve(a.T @ a + RIDGE * len(a) * torch.eye(a.shape[1], dtype=a.dtype), a.T @ target)
    nearest = (torch.nn.functional.normalize((b @ weights).float(), dim=-1) @ unit_embeddings.T).argmax(-1)
    return (nearest == token_ids(heldout)).float().mean().item()


tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
for template in ("The secret word is {}.", "The secret word is {}"):
    h_train, h_heldout = read(template, train), read(template, heldout)
    print(f"{template!r:28} raw layer-{LAYER} state: held-out {heldout_accuracy(h_train, h_heldout):.3f}")
    for scaling in (0.2, 0.01):
        reservoir = Reservoir(ReservoirConfig(units=UNITS, leak_rate=1.0, input_scaling=scaling), h_train.shape[1])
        s_train, s_heldout = (reservoir.step(reservoir.initial_state(len(h)), h) for h in (h_train, h_heldout))
        print(f"{template!r:28} reservoir, input scaling {scaling}: held-out "
              f"{heldout_accuracy(s_train, s_heldout):.3f}")
