"""Tiny random-weight causal LMs of each supported architecture, built from a config in code."""

import torch
from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig, Qwen2Config

VOCAB = 128


def tiny_config(architecture: str, attn_implementation: str = "sdpa"):
    # initializer_range 0.2 (not 0.02) gives logits large enough for a toy task to be learnable.
    common = {"vocab_size": VOCAB, "attn_implementation": attn_implementation, "bos_token_id": 1,
              "eos_token_id": 2, "initializer_range": 0.2}
    if architecture == "gpt2":
        return GPT2Config(n_embd=32, n_layer=4, n_head=4, n_positions=128, **common)
    sizes = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4,
                 num_key_value_heads=2, max_position_embeddings=128)  # grouped-query attention
    if architecture == "llama":
        return LlamaConfig(**sizes, **common)
    if architecture == "qwen2":
        return Qwen2Config(**sizes, **common)
    raise ValueError(architecture)


def tiny_model(architecture: str, seed: int = 0, attn_implementation: str = "sdpa"):
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_config(architecture, attn_implementation))
    model.eval()
    model.requires_grad_(False)
    model.generation_config.pad_token_id = 0
    return model


def tiny_tokenizer():
    """A word-level tokenizer over the tiny models' vocabulary: "w3" .. "w127" are single tokens."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<bos>": 1, "<eos>": 2, **{f"w{i}": i for i in range(3, VOCAB)}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", bos_token="<bos>",
                                   eos_token="<eos>", padding_side="left")


def tiny_chat_tokenizer():
    """The tiny vocabulary with ChatML's tokens: <|im_start|> and <|im_end|> are 3 and 4, user and assistant 5, 6."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<bos>": 1, "<eos>": 2, "<|im_start|>": 3, "<|im_end|>": 4, "user": 5, "assistant": 6,
             **{f"w{i}": i for i in range(7, VOCAB)}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.add_special_tokens(["<|im_start|>", "<|im_end|>"])
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", bos_token="<bos>",
                                   eos_token="<eos>", padding_side="left")


def tiny_text_model_dir(path, texts, architecture: str = "llama"):
    """A tiny random model and a word-level tokenizer in which every word of ``texts`` is one token (punctuation
    apart), with ChatML's two tokens and a newline as SmolLM2 has them, saved as a local model directory: it
    stands in for SmolLM2 where a test runs text written for it."""
    import re

    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = sorted({piece for text in texts for piece in re.findall(r"\w+|[^\w\s]+", text)})
    vocab = {"<pad>": 0, "<bos>": 1, "<eos>": 2, "<|im_start|>": 3, "<|im_end|>": 4, "\n": 5,
             **{word: index for index, word in enumerate(words, 6)}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.add_special_tokens(["<|im_start|>", "<|im_end|>"])
    backend.add_tokens(["\n"])  # a newline is a token (the chat format's idle tick reads one), as in SmolLM2
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", bos_token="<bos>",
                                        eos_token="<eos>", padding_side="left")
    config = tiny_config(architecture)
    config.vocab_size = len(vocab)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    model.generation_config.pad_token_id = 0
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def tiny_session_model_dir(path, seed: int = 0):
    """A tiny Llama and a word-level tokenizer that keeps whitespace as tokens ("w5 w6" -> [5, 3, 6]; a newline
    is token 2, which an idle tick of the text format reads), saved as a local model directory for sessions."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<eos>": 1, "\n": 2, " ": 3} | {f"w{i}": i for i in range(4, VOCAB)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"\s"), behavior="isolated")
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<eos>", pad_token="<pad>")
    tiny_model("llama", seed).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path

