"""The cross-pass recall task: pass 1 stores a key, the context is wiped, pass 2 must recall it.

    pass 1: "The secret word is apple."      (no target)
    -- context wiped; only the reservoir state carries over --
    pass 2: "The secret word was"            -> " apple"

Templates and keys are configurable (``RecallTask.from_file`` reads a JSON file with the same fields).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from transformers import PreTrainedTokenizerBase

from ran.episodes import Episode, Pass, single_token_id
from ran.errors import ConfigError

# Common nouns that are one token (with a leading space) for GPT-2, Llama/SmolLM2 and Qwen tokenizers.
DEFAULT_KEY_POOL = (
    "apple river piano tiger cloud stone house garden music water paper green dream money phone horse chair "
    "table bread happy window summer winter forest ocean mountain castle dragon pencil basket candle rocket "
    "planet silver golden coffee orange yellow purple doctor teacher camera guitar bottle letter flower butter "
    "mirror pillow monkey rabbit turtle spider engine bridge island desert valley circle square"
).split()


@dataclass(frozen=True)
class RecallTask:
    keys: tuple[str, ...] = tuple(DEFAULT_KEY_POOL[:6])
    store_template: str = "The secret word is {key}."
    recall_template: str = "The secret word was"
    key_prefix: str = " "  # the target token is key_prefix + key (a space-prefixed word)

    def __post_init__(self) -> None:
        if not self.keys:
            raise ConfigError("the key list is empty: give at least one key")
        if len(set(self.keys)) != len(self.keys):
            repeated = sorted(k for k in set(self.keys) if self.keys.count(k) > 1)
            raise ConfigError(f"the key list has duplicates: {repeated}")
        if "{key}" not in self.store_template:
            raise ConfigError(f"store template {self.store_template!r} does not contain {{key}}")
        if "{key}" in self.recall_template:
            raise ConfigError(f"recall template {self.recall_template!r} must not contain the key")

    @classmethod
    def with_n_keys(cls, n: int, **overrides) -> RecallTask:
        if not 1 <= n <= len(DEFAULT_KEY_POOL):
            raise ConfigError(f"number of keys must be in 1..{len(DEFAULT_KEY_POOL)} for the built-in pool, got {n}")
        return cls(keys=tuple(DEFAULT_KEY_POOL[:n]), **overrides)

    @classmethod
    def from_dict(cls, data: dict) -> RecallTask:
        known = {f.name for f in fields(cls)}
        if set(data) - known:
            raise ConfigError(f"unknown recall task keys {sorted(set(data) - known)}: valid are {sorted(known)}")
        data = dict(data)
        if "keys" in data:
            data["keys"] = tuple(data["keys"])
        return cls(**data)

    @classmethod
    def from_file(cls, path: str | Path) -> RecallTask:
        try:
            data = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"task file not found: {path}") from None
        except json.JSONDecodeError as error:
            raise ConfigError(f"task file {path} is not valid JSON: {error}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"task file {path} must hold a JSON object")
        return cls.from_dict(data)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["keys"] = list(self.keys)
        return data

    def target(self, key: str) -> str:
        return self.key_prefix + key

    def key_token_ids(self, tokenizer: PreTrainedTokenizerBase) -> list[int]:
        """Each key's target token id; refuses keys that are not a single token."""
        ids = []
        for key in self.keys:
            try:
                ids.append(single_token_id(tokenizer, self.target(key)))
            except ConfigError:
                count = len(tokenizer.encode(self.target(key), add_special_tokens=False))
                raise ConfigError(
                    f"key {key!r} is not a single token for this tokenizer ({self.target(key)!r} -> {count} tokens); "
                    "choose keys that are one token"
                ) from None
        if len(set(ids)) != len(ids):
            raise ConfigError("two keys map to the same token")
        return ids

    def episodes(self, show_key_in_recall: list[bool] | None = None) -> list[Episode]:
        """One episode per key. ``show_key_in_recall[i]`` puts the store sentence in the recall pass too
        (the curriculum's scaffold: the answer is then readable from the context)."""
        result = []
        for index, key in enumerate(self.keys):
            store = self.store_template.format(key=key)
            recall = self.recall_template
            if show_key_in_recall and show_key_in_recall[index]:
                recall = f"{store} {recall}"
            result.append(Episode((Pass(store), Pass(recall, self.target(key))), label=key))
        return result
