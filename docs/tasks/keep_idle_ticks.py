"""A copy of each artifact in a directory with ``idle_write`` "keep" (or, with ``--idle-write gate``, "gate"): the
same weight files (checked), only the idle tick's write differs. "keep" is for artifacts saved before the field
(they decide with the write switch, "gate"; training taught their write shut on idle ticks either way); "gate" gives
a paired control for one saved with "keep".

Usage: python docs/tasks/keep_idle_ticks.py SOURCE_DIR TARGET_DIR [--idle-write keep|gate] [--model smollm2-135m]
(SOURCE_DIR holds artifact directories, e.g. ``ran remember --save``'s memory-seedN.)
"""

from __future__ import annotations

import argparse
import shutil
from dataclasses import replace
from pathlib import Path

from ran.artifact import artifact_pass_format, read_artifact_description
from ran.integrity import read_weights, tensor_digest
from ran.loading import load_model
from ran.model import ReservoirModel
from ran.reading import IDLE_WRITES


def same_weights(first: Path, second: Path) -> bool:
    """Both artifacts list the same weight files, each with equal tensors and metadata. Not the files' bytes: the
    safetensors writer orders a header's metadata as its hash map does, so the same gate head saved twice can
    differ in bytes (and in the description's hash) though every value is equal."""
    files = sorted(read_artifact_description(first)["files"])
    if files != sorted(read_artifact_description(second)["files"]):
        return False
    for name in files:
        (a, a_metadata), (b, b_metadata) = (read_weights(directory / name, name) for directory in (first, second))
        if a_metadata != b_metadata or tensor_digest(a) != tensor_digest(b):
            return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("target", type=Path)
    parser.add_argument("--idle-write", default="keep", choices=IDLE_WRITES)
    parser.add_argument("--model", default="smollm2-135m")
    args = parser.parse_args()
    base, _ = load_model(args.model)
    for directory in sorted(p for p in args.source.iterdir() if (p / "ran_config.json").is_file()):
        model = ReservoirModel.from_pretrained(base, directory)
        model.config = replace(model.config, idle_write=args.idle_write)
        out = args.target / directory.name
        shutil.copytree(directory, out, dirs_exist_ok=True)  # run.json and all; the config is written anew
        model.save_pretrained(out, pass_format=artifact_pass_format(directory))
        model.unwrap()
        if not same_weights(directory, out):
            raise SystemExit(f"{out}: the weight files differ from {directory}'s")
        print(f"{out}: idle_write {args.idle_write}, weights as {directory}")


if __name__ == "__main__":
    main()
