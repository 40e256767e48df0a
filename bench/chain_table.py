#!/usr/bin/env python3
"""Tables of bench/chain_compare.sh: ours against the PyTorch loop, paired by seed."""

import glob
import json
import math
import os
import sys

# Student-t 97.5% quantiles for 1..30 degrees of freedom.
T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
        2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
        2.060, 2.056, 2.052, 2.048, 2.045, 2.042]


def mean_sd(values):
    m = sum(values) / len(values)
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return m, sd


def interval(differences):
    m, sd = mean_sd(differences)
    if len(differences) < 2:
        return m, None
    half = T975[min(len(differences) - 1, len(T975)) - 1] * sd / math.sqrt(len(differences))
    return m, half


def cell(differences, scale=100.0, digits=2):
    m, half = interval(differences)
    if half is None:
        return f"{scale * m:+.{digits}f} (n = 1)"
    low, high = scale * (m - half), scale * (m + half)
    star = " *" if low > 0 or high < 0 else ""
    return f"{scale * m:+.{digits}f} [{low:+.{digits}f}, {high:+.{digits}f}]{star}"


def main(out):
    ours, torch, checks, times = {}, {}, {}, {}
    for path in glob.glob(os.path.join(out, "torch", "seed-*.json")):
        name = os.path.basename(path)
        seed = int(name.split("-")[1].split(".")[0])
        with open(path) as f:
            (checks if name.endswith(".checkpoint.json") else torch)[seed] = json.load(f)
    for seed, ref in torch.items():
        run = ref["run"]
        with open(os.path.join(run, "test.jsonl")) as f:
            tests = [json.loads(line) for line in f if line.strip()]
        with open(os.path.join(run, "metrics.jsonl")) as f:
            metrics = [json.loads(line) for line in f if line.strip()]
        ours[seed] = (tests, metrics)
        with open(os.path.join(out, "ours", f"seed-{seed}.time.json")) as f:
            times[seed] = json.load(f)["seconds"]
    seeds = sorted(set(ours) & set(torch))
    steps = len(torch[seeds[0]]["steps"])
    print(f"\n{len(seeds)} seeds ({', '.join(map(str, seeds))}); test accuracy in percent, "
          "mean ± std; differences ours - PyTorch, paired by seed, with 95% Student-t intervals "
          "(`*`: excludes 0).\n")
    print("| step | model | ours | PyTorch | ours - PyTorch |")
    print("|---|---|---:|---:|---:|")
    for step in range(steps):
        for kind in ("best", "final"):
            a = [next(r for r in ours[s][0] if r["step"] == step)[f"test_acc_{kind}"] for s in seeds]
            b = [torch[s]["steps"][step][f"test_acc_{kind}"] for s in seeds]
            ma, sa = mean_sd(a)
            mb, sb = mean_sd(b)
            print(f"| {step} | {kind} | {100 * ma:.2f} ± {100 * sa:.2f} | {100 * mb:.2f} ± "
                  f"{100 * sb:.2f} | {cell([x - y for x, y in zip(a, b)])} |")
    print("\nTraining loss (with the regularizer) per step and epoch, mean over seeds:\n")
    print("| step | epoch | ours | PyTorch | ours - PyTorch |")
    print("|---|---|---:|---:|---:|")
    epochs = len(torch[seeds[0]]["steps"][0]["epochs"])
    for step in range(steps):
        for epoch in range(epochs):
            a = [next(m for m in ours[s][1] if m["step"] == step and m["epoch"] == epoch)["train_loss"]
                 for s in seeds]
            b = [torch[s]["steps"][step]["epochs"][epoch]["train_loss"] for s in seeds]
            print(f"| {step} | {epoch} | {mean_sd(a)[0]:.5f} | {mean_sd(b)[0]:.5f} | "
                  f"{cell([x - y for x, y in zip(a, b)], scale=1.0, digits=5)} |")
    print("\nStep 0's best checkpoint of our run, evaluated by torchvision on the same test images:\n")
    print("| seed | correct, recorded by sd-cli | correct, torchvision | same |")
    print("|---|---:|---:|---|")
    for seed in sorted(checks):
        c = checks[seed]
        same = "yes" if c["correct_recorded"] == c["correct_torchvision"] else "no"
        print(f"| {seed} | {c['correct_recorded']} / {c['images']} | {c['correct_torchvision']} / "
              f"{c['images']} | {same} |")
    a = [times[s] for s in seeds]
    b = [torch[s]["seconds"] for s in seeds]
    print(f"\nWall time per chain (data, training, validation, tests; ours also writes checkpoints "
          f"and logs): ours {mean_sd(a)[0]:.1f} ± {mean_sd(a)[1]:.1f} s, PyTorch "
          f"{mean_sd(b)[0]:.1f} ± {mean_sd(b)[1]:.1f} s: ours at {mean_sd(b)[0] / mean_sd(a)[0]:.2f}x "
          f"PyTorch's speed.")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "target/bench/chain")
