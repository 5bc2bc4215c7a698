"""No harm to ordinary use: the base model's own replies, and how far a carried state moves the model from them.

A memory that takes over every pass is no memory. For any trained artifact this module measures, on
ordinary prompts and text training never read, with a value held in the state:

- *agreement*: the greedy reply (up to ``max_reply_tokens``, ending at the stop token) equals the base
  model's greedy reply to the same prompt (scored through the task's harm episodes, see
  ``ran.tasks.memory``), beside the wiped-state control;
- *perplexity* of held-out plain text read as a user turn, for the base model, the wiped state and the
  carried state.

The base replies are computed once with the injection switched off (the wrapped model is then exactly
the base model) and also serve as training targets: ordinary turns teach the readout to leave them alone.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import PreTrainedModel

from ran.artifact import base_model_identity
from ran.episodes import Episode, Pass, left_pad, render
from ran.errors import ConfigError
from ran.fileio import atomic_write
from ran.loading import cache_dir
from ran.model import ReservoirModel, adapters_disabled
from ran.passes import STOP, Renderer
from ran.tasks.memory import SLOT, MemoryTask
from ran.tasks.memory_texts import HELDOUT_TEXTS, HELDOUT_TURNS
from ran.tasks.recall import RecallTask
from ran.training import predict

MAX_REPLY_TOKENS = 16  # the base replies are cut here: a sentence, enough to tell replies apart, cheap to train on


def base_replies(base: PreTrainedModel, renderer: Renderer, prompts: list[str],
                 max_reply_tokens: int = MAX_REPLY_TOKENS) -> dict[str, str]:
    """prompt -> the base model's greedy reply to it in a fresh context, as a target text (ending in
    :data:`ran.passes.STOP` when the reply ended within ``max_reply_tokens``). ``base`` is the unwrapped
    model (or a wrapped model's ``base`` outside a pass, where the write-back is off).

    Replies are cached on disk (under ``ran.loading.cache_dir()``), keyed by the base model's identity,
    the pass format, the prompt and the length: a second run reads them instead of decoding again.
    """
    identity = base_model_identity(base)
    key = json.dumps([identity["embedding_sha256"], identity["model_type"], identity["n_layers"],
                      renderer.format.to_dict(), max_reply_tokens], sort_keys=True)
    path = cache_dir() / "replies" / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.json"
    cached: dict[str, str] = {}
    if path.is_file():
        try:
            cached = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            cached = {}
    missing = [p for p in dict.fromkeys(prompts) if p not in cached]
    if missing:
        with adapters_disabled(base):  # the base model's replies, not those of LoRA layers a run added to it
            cached.update(_decode_replies(base, renderer, missing, max_reply_tokens))
        try:
            atomic_write(path, json.dumps(cached, indent=0, sort_keys=True))
        except OSError:
            pass  # a read-only cache costs time, not correctness
    return {prompt: cached[prompt] for prompt in prompts}


@torch.no_grad()
def _decode_replies(base: PreTrainedModel, renderer: Renderer, prompts: list[str], max_reply_tokens: int,
                    batch_size: int = 16) -> dict[str, str]:
    device = base.device
    replies: dict[str, str] = {}
    stop = set(renderer.stop_tokens)
    unique = list(dict.fromkeys(prompts))
    for start in tqdm(range(0, len(unique), batch_size), desc="base replies", leave=False, dynamic_ncols=True):
        chunk = unique[start:start + batch_size]
        ids, mask, _ = left_pad([renderer.turn(prompt) for prompt in chunk])
        output = base.generate(input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=False,
                               max_new_tokens=max_reply_tokens, eos_token_id=list(stop), pad_token_id=0)
        for prompt, row in zip(chunk, output[:, ids.shape[1]:].tolist(), strict=True):
            tokens = []
            for token in row:
                tokens.append(token)
                if token in stop:
                    break
            stopped = tokens[-1] in stop
            text = renderer.tokenizer.decode(tokens[:-1] if stopped else tokens)
            replies[prompt] = text + STOP if stopped or not text else text
    return replies


def with_base_replies(task, base: PreTrainedModel, renderer: Renderer):
    """The task with ``replies`` filled for every ordinary turn it reads (training and held-out)."""
    prompts = [t for t in (*task.turns, *task.heldout_turns) if t not in task.replies]
    return replace(task, replies={**base_replies(base, renderer, prompts), **task.replies})


@torch.no_grad()
def perplexity(model: ReservoirModel, renderer: Renderer, texts: list[str], state: torch.Tensor | None,
               base: bool = False) -> float:
    """exp(mean negative log-likelihood) of each text's own tokens (but a first token nothing precedes),
    read as a user turn from a fresh context, with ``state`` (1, K) written back (None: the zero state)
    or, with ``base``, no injection."""
    device = model.reservoir.w_in.device
    total, count = 0.0, 0
    for text in texts:
        turn = renderer.turn(text)
        body = renderer.encode(text)
        start = _find(turn, body)
        ids = torch.tensor([turn], device=device)
        row_state = model.reservoir.initial_state(1, device) if state is None else state.to(device)
        if base:
            with model.injection_disabled():
                logits = model(ids, state=row_state).logits
        else:
            logits = model(ids, state=row_state).logits  # (1, T, vocab)
        first = max(start, 1)  # the first position that something precedes
        predicted = logits[0, first - 1:start + len(body) - 1].float()  # the positions that predict the body
        scored = torch.tensor(turn[first:start + len(body)], device=device)
        total += float(F.cross_entropy(predicted, scored, reduction="sum"))
        count += len(scored)
    return math.exp(total / count)


def _find(sequence: list[int], part: list[int]) -> int:
    for index in range(len(sequence) - len(part) + 1):
        if sequence[index:index + len(part)] == part:
            return index
    raise ValueError("the text's tokens do not appear in its turn")  # not reached for the formats here


@torch.no_grad()
def state_holding(model: ReservoirModel, renderer: Renderer, passes: list[Pass]) -> torch.Tensor | None:
    """(1, K) the state after running ``passes`` (None, the zero state, when there are none)."""
    if not passes:
        return None
    device = model.reservoir.w_in.device
    state = model.reservoir.initial_state(1, device)
    for rendered in render(Episode(tuple(passes)), renderer):
        ids = torch.tensor([list(rendered.prompt)], device=device)
        state = model(ids, state=state, read_only=True, idle=rendered.idle).state
    return state


def perplexity_report(model: ReservoirModel, renderer: Renderer, store: str | None,
                      texts: tuple[str, ...] = HELDOUT_TEXTS) -> dict[str, Any]:
    """Perplexity of held-out text: base model, wiped state, and the state holding ``store``
    (:func:`holding`); ``rise`` is condition / base - 1."""
    held = state_holding(model, renderer, list(holding(renderer, store)))
    report = {"base": perplexity(model, renderer, list(texts), None, base=True),
              "wiped": perplexity(model, renderer, list(texts), None),
              "carried": perplexity(model, renderer, list(texts), held)}
    report["rise"] = {c: report[c] / report["base"] - 1.0 for c in ("wiped", "carried")}
    report["texts"] = len(texts)
    return report


def holding(renderer: Renderer, store: str | None) -> tuple[Pass, ...]:
    """The passes that leave a value in the state before an ordinary prompt: the store pass, then two idle
    ticks (where the format's idle text is a token for this tokenizer)."""
    if not store:
        return ()
    try:
        _ = renderer.idle_tokens  # raises where the idle text is no token
    except ConfigError:
        return (Pass(store),)
    return Pass(store), Pass.tick(), Pass.tick()


def agreement(model: ReservoirModel, renderer: Renderer, replies: dict[str, str], store: str | None,
              carry: bool) -> dict[str, Any]:
    """How often the greedy reply to each prompt equals the base model's (``replies``), with the state
    holding ``store`` (:func:`holding`) carried, or wiped before the prompt."""
    lead = holding(renderer, store)
    prompts = list(replies)
    episodes = [Episode((*lead, Pass(prompt, target=replies[prompt]))) for prompt in prompts]
    predictions = predict(model, renderer, episodes, carry=carry, stop_tokens=renderer.stop_tokens, extra_tokens=0)
    same, first = [], []
    for prompt, (prediction,) in zip(prompts, predictions, strict=True):
        wanted = renderer.target(replies[prompt])
        same.append(prediction.tokens == wanted)
        first.append(prediction.tokens[:1] == wanted[:1])
    return {"agreement": sum(same) / len(same), "first_token": sum(first) / len(first), "n": len(same),
            "differ": [p for p, s in zip(prompts, same, strict=True) if not s][:10]}


_REPLY_CACHE: dict[tuple, dict[str, str]] = {}


def memory_harm_store(task: MemoryTask) -> str:
    """The pass whose value the state holds during a memory artifact's no-harm check: a held-out name (or the
    first kind's held-out value) in a training phrasing."""
    kind = "name" if "name" in task.kinds else task.kinds[0]
    return task.store_templates[kind][0].replace(SLOT, task.heldout_values[kind][0])


def harm_inputs(task) -> tuple[str | None, tuple[str, ...], tuple[str, ...]]:
    """(what the state holds, held-out prompts, held-out texts) for the no-harm check of a task's artifact."""
    if isinstance(task, MemoryTask):
        return memory_harm_store(task), task.heldout_turns, task.heldout_texts
    store = task.store_template.format(key=task.keys[0]) if isinstance(task, RecallTask) else None
    return store, HELDOUT_TURNS, HELDOUT_TEXTS


def task_harm(model: ReservoirModel, renderer: Renderer, task) -> dict[str, Any]:
    """``{"harm": harm_report(...)}`` for a trained model of ``task``: a measure the runner adds to a record."""
    return {"harm": harm_report(model, renderer, *harm_inputs(task))}


def harm_report(model: ReservoirModel, renderer: Renderer, store: str | None,
                prompts: tuple[str, ...] = HELDOUT_TURNS, texts: tuple[str, ...] = HELDOUT_TEXTS) -> dict[str, Any]:
    """The standard no-harm check of a trained model: agreement with the base model's greedy replies on
    held-out prompts and perplexity of held-out text, each for the base model (injection off), the wiped
    state and the state holding ``store``."""
    key = (id(model.base), renderer.format, prompts)
    if key not in _REPLY_CACHE:
        _REPLY_CACHE[key] = base_replies(model.base, renderer, list(prompts))
    replies = _REPLY_CACHE[key]
    with model.injection_disabled():
        base = agreement(model, renderer, replies, None, carry=False)
    report = {"store": store, "agreement": {"base": base, "wiped": agreement(model, renderer, replies, store, False),
                                            "carried": agreement(model, renderer, replies, store, True)}}
    report["perplexity"] = perplexity_report(model, renderer, store, texts)
    return report
