#!/usr/bin/env python3
"""Reads a run directory's TensorBoard event files back with the `tensorboard` package and checks
them against the run's rows (metrics.jsonl, test.jsonl): every epoch and every finished step, each
value equal as float32.

    pip install tensorboard
    python3 bench/tensorboard_check.py RUN_DIR [RUN_DIR ...]

Exit status 0 when every run directory matches; 1 and the first difference otherwise.
"""
import json
import os
import sys

import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

EPOCH_TAGS = {
    "loss/train": "train_loss",
    "loss/validation": "val_loss",
    "accuracy/train": "train_acc",
    "accuracy/validation": "val_acc",
    "alpha": "alpha",
    "learning_rate": "lr",
}
STEP_TAGS = {
    "accuracy/test_final": "test_acc_final",
    "accuracy/test_best": "test_acc_best",
    "accuracy/validation_best": "best_val_acc",
    "alpha": "alpha",
}


def rows(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def scalars(run):
    acc = EventAccumulator(run, size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def same(a, b):
    return np.float32(a) == np.float32(b) or (np.isnan(np.float32(a)) and np.isnan(np.float32(b)))


def check(run_dir):
    metrics = rows(os.path.join(run_dir, "metrics.jsonl"))
    tests = rows(os.path.join(run_dir, "test.jsonl"))
    board = os.path.join(run_dir, "tensorboard")
    checked = 0
    for step in sorted({m["step"] for m in metrics}):
        got = scalars(os.path.join(board, f"step_{step}"))
        want = [m for m in metrics if m["step"] == step]
        for tag, field in EPOCH_TAGS.items():
            values = got.get(tag, [])
            if len(values) != len(want):
                return f"{run_dir}: step {step}, {tag}: {len(values)} events, {len(want)} rows"
            for (epoch, value), row in zip(values, want):
                expected = row[field] if row[field] is not None else float("nan")
                if epoch != row["epoch"] or not same(value, expected):
                    return f"{run_dir}: step {step}, {tag}: ({epoch}, {value}) against {row}"
                checked += 1
    got = scalars(os.path.join(board, "chain")) if tests else {}
    for tag, field in STEP_TAGS.items():
        values = got.get(tag, [])
        if len(values) != len(tests):
            return f"{run_dir}: chain, {tag}: {len(values)} events, {len(tests)} rows"
        for (step, value), row in zip(values, sorted(tests, key=lambda r: r["step"])):
            expected = row[field] if row[field] is not None else float("nan")
            if step != row["step"] or not same(value, expected):
                return f"{run_dir}: chain, {tag}: ({step}, {value}) against {row}"
            checked += 1
    print(f"{run_dir}: {checked} scalars match ({len(metrics)} epochs, {len(tests)} steps)")
    return None


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for run_dir in sys.argv[1:]:
        error = check(run_dir)
        if error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(1)


if __name__ == "__main__":
    main()
