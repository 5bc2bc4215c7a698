"""One definition of a pass: how an input becomes tokens, where the reservoir reads, what joins the context.

Training, evaluation and the live runtime all render passes here, so an artifact trained on episodes
reads exactly what a session feeds it. A pass is one of:

- an *input* pass: the user's text, rendered by the :class:`PassFormat` as a turn;
- an *idle* tick: ``idle_text`` (a blank observation), appended to whatever context there is; or, with
  ``tick="turn"`` in the chat format, an empty user turn, so the model's reply on a tick is an assistant turn.

The context is a list of token ids. A pass reads ``context + turn``; the reservoir reads layer L at the
last token of that (the end of the prompt, before any reply). The reply (the target in training, the
generated tokens in a session) is then closed by the format and joins the context, which the next pass
continues unless the context is wiped.

Formats:

- ``text``: a turn is the text verbatim; a reply is its tokens (the model continues the text). This is
  the original study's format: "The secret word is apple." / wipe / "The secret word was" -> " apple".
- ``chat``: ChatML, as SmolLM2 and Qwen use: ``<|im_start|>user\\n{text}<|im_end|>\\n<|im_start|>assistant\\n``,
  and a reply is closed with ``<|im_end|>\\n``. Needs a tokenizer with those tokens.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from transformers import PreTrainedTokenizerBase

from ran import schema
from ran.errors import ConfigError

FORMATS = ("text", "chat")
# What an idle tick reads: the idle text (text), or (turn, chat only) an empty user turn. A text tick on a wiped context
# reads one token, so its prompt ends at position 0, where a causal LM's residual stream holds the first token's
# massive activation (SmolLM2-135M, layer 15: |h| ~24,000 against ~150 elsewhere). There the memory barely moves the
# reply: a random readout that changes the next token for 15-16 of 16 random states at every other tick or turn
# changes it for 0 of 16 (docs/tasks/probe_first_position.py), and a tick due right after a wipe cannot say a word.
# A turn tick's prompt ends 9 tokens in.
TICKS = ("text", "turn")
CHAT_START, CHAT_END = "<|im_start|>", "<|im_end|>"
SILENT = "<silent>"  # a target meaning "say nothing": the format's stop token
STOP = "<stop>"  # at the end of a target: the reply ends there, with the format's stop token


@dataclass(frozen=True)
class PassFormat:
    """How passes are rendered; saved with every artifact and session, so all surfaces agree."""

    kind: str = "text"  # text | chat
    idle_text: str = "\n"  # what an idle tick reads (tick "text")
    tick: str = "text"  # text: an idle tick reads idle_text; turn (chat): it reads an empty user turn

    def __post_init__(self) -> None:
        if self.kind not in FORMATS:
            raise ConfigError(f"unknown pass format '{self.kind}': choose one of {', '.join(FORMATS)}")
        if not isinstance(self.idle_text, str) or not self.idle_text:
            raise ConfigError(f"idle_text must be a non-empty string, got {self.idle_text!r}")
        if self.tick not in TICKS:
            raise ConfigError(f"unknown tick '{self.tick}': choose one of {', '.join(TICKS)}")
        if self.tick == "turn" and self.kind != "chat":
            raise ConfigError("tick 'turn' (an empty user turn) needs the chat format: use --format chat, or "
                              "tick 'text'")

    def to_dict(self) -> dict[str, Any]:
        """Its fields; ``tick`` only where it is not "text", so formats saved before it keep their description."""
        data = asdict(self)
        if self.tick == "text":
            del data["tick"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> PassFormat:
        return schema.from_dict(cls, data or {}, "pass format")


def has_chat_tokens(tokenizer: PreTrainedTokenizerBase) -> bool:
    vocabulary = tokenizer.get_vocab()
    return CHAT_START in vocabulary and CHAT_END in vocabulary


def default_format(tokenizer: PreTrainedTokenizerBase) -> PassFormat:
    """``chat`` for a tokenizer with ChatML tokens, else ``text``."""
    return PassFormat("chat" if has_chat_tokens(tokenizer) else "text")


class Renderer:
    """A :class:`PassFormat` bound to a tokenizer: the token ids of turns, idle ticks, replies and targets."""

    def __init__(self, pass_format: PassFormat, tokenizer: PreTrainedTokenizerBase):
        if pass_format.kind == "chat" and not has_chat_tokens(tokenizer):
            raise ConfigError(f"the chat pass format needs the tokens {CHAT_START} and {CHAT_END}, which this "
                              "tokenizer does not have: use the text format")
        self.format = pass_format
        self.tokenizer = tokenizer
        self._encoded: dict[str, list[int]] = {}
        stop = {tokenizer.eos_token_id} - {None}
        if pass_format.kind == "chat":
            stop.add(tokenizer.convert_tokens_to_ids(CHAT_END))
            self.reply_end = self.encode(f"{CHAT_END}\n")
            self.silence = tokenizer.convert_tokens_to_ids(CHAT_END)
        else:
            self.reply_end = []
            self.silence = tokenizer.eos_token_id
        self.stop_tokens = tuple(sorted(int(t) for t in stop))

    @property
    def idle_tokens(self) -> list[int]:
        """What an idle tick reads (refused, when first needed, if the idle text encodes to nothing)."""
        if self.format.tick == "turn":
            return self.turn("")
        tokens = self.encode(self.format.idle_text)
        if not tokens:
            raise ConfigError(f"idle text {self.format.idle_text!r} encodes to no tokens for this tokenizer: "
                              "choose another idle text")
        return tokens

    def encode(self, text: str) -> list[int]:
        if text not in self._encoded:
            self._encoded[text] = list(self.tokenizer.encode(text, add_special_tokens=False))
        return self._encoded[text]

    def turn(self, text: str) -> list[int]:
        """The tokens of one input pass (without the context before it)."""
        if self.format.kind == "chat":
            return self.encode(f"{CHAT_START}user\n{text}{CHAT_END}\n{CHAT_START}assistant\n")
        tokens = self.encode(text)
        if not tokens:
            raise ConfigError(f"input {text!r} encodes to no tokens")
        return tokens

    def turn_labels(self, text: str, part: str, last: bool = False) -> list[int]:
        """Per token of ``turn(text)``: 1 where the token overlaps the first occurrence of ``part`` in
        ``text`` (``last``: only the last such token), else 0 (all 0 for an empty ``part``): where a trained
        read should take its input."""
        tokens = self.turn(text)
        if not part:
            return [0] * len(tokens)
        where = text.find(part)
        if where < 0:
            raise ConfigError(f"{part!r} does not occur in {text!r}: a pass can only read what it contains")
        rendered = (f"{CHAT_START}user\n{text}{CHAT_END}\n{CHAT_START}assistant\n" if self.format.kind == "chat"
                    else text)
        start = rendered.find(text) + where
        encoded = self.tokenizer(rendered, add_special_tokens=False, return_offsets_mapping=True)
        if list(encoded["input_ids"]) != tokens:
            raise ConfigError(f"this tokenizer does not give stable offsets for {text!r}")
        labels = [int(begin < start + len(part) and end > start) for begin, end in encoded["offset_mapping"]]
        if last:
            final = max(i for i, label in enumerate(labels) if label)
            labels = [int(i == final) for i in range(len(labels))]
        return labels

    def target(self, text: str) -> list[int]:
        """The tokens the model must produce right after a pass; :data:`SILENT` is the stop token alone, and
        a text ending in :data:`STOP` is followed by it (a reply that ends there; :data:`STOP` alone, a reply that
        ends at once, is the stop token alone)."""
        if text == SILENT or text.endswith(STOP):
            if self.silence is None:
                raise ConfigError("the tokenizer has no end-of-sequence token to end a reply with")
            said = "" if text == SILENT else text[:-len(STOP)]
            return (self.target(said) if said else []) + [int(self.silence)]
        tokens = self.encode(text)
        if not tokens:
            raise ConfigError(f"target {text!r} encodes to no tokens")
        return tokens

    def close_reply(self, reply: list[int]) -> list[int]:
        """What joins the context after a pass whose reply was ``reply`` (stop tokens excluded)."""
        return [t for t in reply if t not in self.stop_tokens] + self.reply_end
