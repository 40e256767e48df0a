#!/usr/bin/env bash
# sd-data benchmarks side by side: numpy and torchvision (bench/data_reference.py), then ours
# (criterion, crates/sd-data/benches/data.rs), then one table with ratios.
# Needs numpy, torch and torchvision: PYTHON=/path/to/venv/bin/python bench/data_compare.sh
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
mkdir -p target/bench

echo "== $(date -u +%Y-%m-%dT%H:%MZ) on $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; load: $(cut -d' ' -f1-3 /proc/loadavg)"
cargo build --release -p sd-cli --quiet
fixture=target/bench/cifar-official-size
rm -rf "$fixture"
target/release/sd-cli data fixture --out "$fixture" --train 50000 --test 10000 > /dev/null
"$python" bench/data_reference.py --cifar "$fixture/cifar-10-batches-bin" \
    --out target/bench/data_reference.json > /dev/null
cargo bench -p sd-data --bench data > target/bench/data_criterion.log
python3 bench/data_table.py target/bench/data_reference.json target/criterion
