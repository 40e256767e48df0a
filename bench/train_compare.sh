#!/usr/bin/env bash
# Training-step throughput, ours (candle) next to PyTorch CPU, case by case in fresh processes,
# both on 2 threads. Needs torch + torchvision: PYTHON=/path/to/venv/bin/python bench/train_compare.sh
# SD_TRAIN_CASES="18:imagenet:16 ..." limits the cases; SD_TRAIN_SECONDS caps the timed steps of a case.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
cases=${SD_TRAIN_CASES:-"18:imagenet:16 18:imagenet:128 18:cifar:16 18:cifar:128 50:imagenet:16 50:imagenet:128 50:cifar:16 50:cifar:128"}
seconds=${SD_TRAIN_SECONDS:-60}
mkdir -p target/bench
out=target/bench/train_step.jsonl
: > "$out"
echo "== $(date -u +%Y-%m-%dT%H:%MZ) on $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; load: $(cut -d' ' -f1-3 /proc/loadavg)"
cargo build --release -p sd-train --example train_step --quiet
for case in $cases; do
    IFS=: read -r depth stem batch <<< "$case"
    RAYON_NUM_THREADS=2 target/release/examples/train_step "$depth" "$stem" "$batch" 10 "$seconds" >> "$out"
    "$python" bench/train_step.py "$depth" "$stem" "$batch" 10 "$seconds" --threads 2 >> "$out"
done
python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("| model | stem | batch | ours images/s | PyTorch images/s | ratio | ours peak MiB | PyTorch peak MiB |")
print("|---|---|---|---|---|---|---|---|")
for ours, torch in zip(rows[0::2], rows[1::2]):
    print(f"| ResNet-{ours['resnet']} | {ours['stem']} | {ours['batch']} | {ours['images_per_s']:.1f} | "
          f"{torch['images_per_s']:.1f} | {ours['images_per_s'] / torch['images_per_s']:.2f}x | "
          f"{ours['peak_rss_mib']:.0f} | {torch['peak_rss_mib']:.0f} |")
PY
