#!/usr/bin/env bash
# Kernel ridge benchmarks side by side: numpy/scipy/scikit-learn (bench/krr_reference.py), then
# ours (criterion, crates/sd-kernel/benches/krr.rs), then peak memory (bench/krr_memory.py), and
# the merged table with ratios. Needs: pip install numpy scipy scikit-learn.
#   bench/krr_compare.sh                      # n = 1000, 2000, 4000 (about 15 minutes on 2 cores)
#   SD_BENCH_SIZES=1000 bench/krr_compare.sh  # quicker
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=${SD_BENCH_SIZES:-1000,2000,4000}
largest=${sizes##*,}
mkdir -p target/bench

echo "== $(date -u +%Y-%m-%dT%H:%MZ) on $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; load: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 bench/krr_reference.py --sizes "$sizes" --out target/bench/krr_reference.json > /dev/null
SD_BENCH_SIZES=$sizes cargo bench -p sd-kernel --bench krr > target/bench/krr_criterion.log
cargo build --release -p sd-cli --quiet
python3 bench/krr_memory.py --n "$largest" --out target/bench/krr_memory.json > /dev/null
python3 bench/krr_table.py target/bench/krr_reference.json target/criterion target/bench/krr_memory.json
