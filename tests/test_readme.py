"""README's Python examples run as written, so they cannot silently rot.

Every ```python block of README.md runs in order, in one namespace, in a temporary directory, with the
embedded SmolLM2 replaced by a tiny random-weight model whose word-level tokenizer knows every word the
examples and the built-in tasks use, and with the substitutions below (each must still match the README).
"""

import re
from pathlib import Path

from tiny_models import tiny_text_model_dir

import ran.loading
from ran.tasks.texts import DEFAULT_KEY_POOL, EVAL_DISTRACTORS, TRAIN_DISTRACTORS

README = Path(__file__).resolve().parent.parent / "README.md"
# (text in the README, what runs instead, why)
SUBSTITUTIONS = [("TrainConfig(steps=300)", "TrainConfig(steps=3)", "300 steps take minutes; 3 show it runs")]


def readme_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", README.read_text(), flags=re.S | re.M)


def test_readme_python_examples_run_as_written(tmp_path, monkeypatch):
    blocks = readme_blocks()
    assert len(blocks) >= 2, "README.md lost its Python examples"
    code = "\n".join(blocks)
    for written, instead, _ in SUBSTITUTIONS:
        assert written in code, f"README no longer contains {written!r}: update SUBSTITUTIONS"
        code = code.replace(written, instead)
    texts = [code, " ".join(DEFAULT_KEY_POOL), *TRAIN_DISTRACTORS, *EVAL_DISTRACTORS]
    tiny = tiny_text_model_dir(tmp_path / "tiny-smollm2", texts)
    monkeypatch.setattr(ran.loading, "_cached_smollm2", lambda: tiny)  # "smollm2-135m" loads the tiny model
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for number, block in enumerate(blocks, 1):
        for written, instead, _ in SUBSTITUTIONS:
            block = block.replace(written, instead)
        exec(compile(block, f"README.md python block {number}", "exec"), namespace)
    assert (tmp_path / "state.safetensors").is_file() and (tmp_path / "artifact" / "ran_config.json").is_file()
    groups = namespace["record"]["scores"]["carried"]["groups"]
    assert {row["delay"] for row in groups} == {0, 8, 16, 32}  # the task the README describes was evaluated
