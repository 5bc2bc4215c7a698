"""The layer-input cache: a sequence that extends a computed one reuses its prefix and gets the same input."""

import pytest
import torch
from tiny_models import tiny_model

from ran.episodes import Episode, Pass, render
from ran.model import RanConfig, wrap
from ran.passes import PassFormat, Renderer
from ran.reservoir import ReservoirConfig
from ran.training import LayerInputCache, run_episodes


@pytest.mark.parametrize("architecture", ["llama", "qwen2", "gpt2"])
def test_extending_a_cached_prefix_gives_the_layer_input_of_the_whole_sequence(architecture):
    model = wrap(tiny_model(architecture), RanConfig(n_slots=2, reservoir=ReservoirConfig(units=32)))
    cache = LayerInputCache(model)
    prefixes = [(5, 6, 7), (8, 9, 10, 11, 12)]
    extended = [(5, 6, 7, 20, 21), (8, 9, 10, 11, 12, 30), (5, 6, 7, 40, 41, 42, 43)]
    cache._compute(prefixes)
    cache._compute(extended)
    assert cache.reused_tokens == 3 + 5 + 3 and cache.computed_tokens == 8 + 2 + 1 + 4
    for sequence in extended:
        alone = model.layer_input(torch.tensor([sequence]))[0]
        # float32 sums over at most a dozen positions and a few layers: a few ulps of the activations
        torch.testing.assert_close(cache._entries[sequence], alone, atol=1e-5, rtol=1e-5)


def test_a_session_like_episode_costs_its_new_tokens_and_trains_the_same():
    from tiny_models import tiny_tokenizer

    model = wrap(tiny_model("llama"), RanConfig(n_slots=2, reservoir=ReservoirConfig(units=32)))
    with torch.no_grad():
        for parameter in model.trainable_parameters():
            parameter.normal_(0, 0.2)
    renderer = Renderer(PassFormat("text", idle_text="w9"), tiny_tokenizer())
    episode = Episode((Pass("w10 w11 w12"), Pass.tick(), Pass("w20 w21", wipe=False, reply="w22 w23"),
                       Pass.tick(), Pass.tick(), Pass("w30", target="w12")))
    rendered = [render(episode, renderer)]
    cache = LayerInputCache(model)
    cached = run_episodes(model, rendered, cache=cache)
    full = run_episodes(model, rendered)
    torch.testing.assert_close(cached.loss, full.loss, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(cached.final_state, full.final_state, atol=1e-5, rtol=1e-5)
    context = sum(len(p.tokens) for p in rendered[0])
    assert cache.computed_tokens < context / 2  # each continuing pass ran only its new tokens
