"""``ran check``: wrap a model and verify the wiring on it.

Prints three checks: non-destruction (max |logit difference| between the wrapped model with the
injection off and the bare model), that the state changes from one pass to the next, and that cached
and uncached greedy generation give the same tokens with the reservoir live. The readout is set to
random nonzero values first, so the write-back really changes the model. Exit status 1 if any fails.
"""

from __future__ import annotations

import argparse
import time

import torch

from ran.cli.common import add_model_arguments, add_reservoir_arguments, reservoir_config_from
from ran.loading import load_model
from ran.model import RanConfig, wrap

PROMPT = "The capital of France is"
NON_DESTRUCTION_ATOL = 1e-5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    add_reservoir_arguments(parser)
    parser.add_argument("--prompt", default=PROMPT, help=f"prompt to check on (default: {PROMPT!r})")
    parser.add_argument("--new-tokens", type=int, default=8, help="tokens to generate (default: 8)")


def run(args: argparse.Namespace) -> int:
    config = RanConfig(mode=args.mode, layer=args.layer, n_slots=args.slots, reservoir=reservoir_config_from(args))
    started = time.perf_counter()
    base, tokenizer = load_model(args.model, device=args.device, dtype=args.dtype)
    print(f"loaded {args.model} ({base.config.model_type}, {base.config.num_hidden_layers} layers) on "
          f"{base.device} in {base.dtype} in {time.perf_counter() - started:.1f}s")
    inputs = tokenizer(args.prompt, return_tensors="pt").to(base.device)
    with torch.no_grad():
        bare_logits = base(**inputs).logits
        model = wrap(base, config)
        generator = torch.Generator().manual_seed(0)
        for parameter in model.injector.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * parameter.shape[-1] ** -0.5)
        print(f"wrapped: mode={model.config.mode} layer={model.config.layer} slots={model.config.n_slots} "
              f"units={model.reservoir.units} fingerprint={model.reservoir.fingerprint[:12]}")

        with model.injection_disabled():
            off_logits = model(**inputs).logits
        difference = (off_logits - bare_logits).abs().max().item()
        checks = [("non-destruction: max |logit diff|, injection off", f"{difference:.2e}",
                   difference <= NON_DESTRUCTION_ATOL)]

        model.reset_state()
        state_one = model(**inputs).state
        on_logits = model(**inputs).logits
        state_two = model.get_state()
        state_change = (state_two - state_one).norm().item()
        write_effect = (on_logits - bare_logits).abs().max().item()
        checks.append(("state changes across two passes: |r2 - r1|", f"{state_change:.3f}", state_change > 0))
        checks.append(("injection on changes logits: max |logit diff|", f"{write_effect:.3f}", write_effect > 0))

        start_state = model.get_state()
        kwargs = dict(max_new_tokens=args.new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        cached = model.generate(**inputs, state=start_state, use_cache=True, **kwargs)
        uncached = model.generate(**inputs, state=start_state, use_cache=False, **kwargs)
        agree = torch.equal(cached, uncached)
        text = tokenizer.decode(cached[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
        checks.append(("cached == uncached generation (reservoir live)", repr(text), agree))

    width = max(len(name) for name, _, _ in checks)
    for name, value, ok in checks:
        print(f"  {'PASS' if ok else 'FAIL'}  {name:<{width}}  {value}")
    failed = sum(not ok for _, _, ok in checks)
    print("all checks passed" if not failed else f"{failed} check(s) failed")
    return 0 if not failed else 1
