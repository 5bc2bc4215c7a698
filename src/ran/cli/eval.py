"""``ran eval DIR``: reload an artifact saved by ``ran crosspass --save`` and measure its recall again."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ran.crosspass import evaluate
from ran.errors import ArtifactError
from ran.loading import load_model
from ran.model import ReservoirModel, read_artifact_description
from ran.recall import RecallTask


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("artifact", help="artifact directory written by ran crosspass --save")
    parser.add_argument("--model", help="base model (default: the one the artifact was trained on)")


def run(args: argparse.Namespace) -> int:
    directory = Path(args.artifact)
    read_artifact_description(directory)  # clear errors for a missing or corrupt artifact first
    experiment_path = directory / "crosspass.json"
    if not experiment_path.is_file():
        raise ArtifactError(f"{directory} has no crosspass.json: it was not saved by ran crosspass --save")
    try:
        saved = json.loads(experiment_path.read_text())
        task = RecallTask.from_dict(saved["task"])
    except (json.JSONDecodeError, KeyError) as error:
        raise ArtifactError(f"{experiment_path} is corrupt: {error}") from None
    base, tokenizer = load_model(args.model or saved["model"])
    model = ReservoirModel.from_pretrained(base, directory)
    measured = evaluate(model, tokenizer, task)
    print(f"{'':>10}  {'saved':>6}  {'now':>6}")
    same = True
    for condition in ("carried", "wiped"):
        before, now = saved["recall"][condition], measured["recall"][condition]
        same &= before == now
        print(f"{condition:>10}  {before:>6.2f}  {now:>6.2f}")
    print("reproduced the saved recall" if same else "recall differs from the saved figures")
    return 0 if same else 1
