#!/usr/bin/env bash
# A whole chain end to end, `sd-cli resnet` next to the original's loop in plain PyTorch
# (bench/chain_reference.py) on the same Fashion-MNIST images, seed by seed, both on 2 threads:
# test accuracy and training loss agree within noise (paired by seed, 95% intervals), the
# step-0 checkpoint gives in torchvision the accuracy our run recorded, and the wall time of each.
#
#   bench/chain_compare.sh                      # 8 seeds, ResNet-18, 5,000 images, 2 epochs x 3 steps, alpha 0.5
#   SEEDS="0 1" EPOCHS=1 bench/chain_compare.sh # fewer
#   KEEP=1 SEEDS="4 5 6 7" bench/chain_compare.sh  # add seeds to an earlier run's (same settings)
#
# Needs torch, torchvision and safetensors (PYTHON=/path/to/venv/bin/python), and
# `apt-get install -y dataset-fashion-mnist`. Writes target/bench/chain/ and prints the tables.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
data=${DATA:-/usr/share/datasets/fashion-mnist}
seeds=${SEEDS:-"0 1 2 3 4 5 6 7"}
epochs=${EPOCHS:-2}
steps=${STEPS:-3}
alpha=${ALPHA:-0.5}
out=target/bench/chain
[ "${KEEP:-0}" = 1 ] || rm -rf "$out"
mkdir -p "$out/ours" "$out/torch"
# Kept seeds must have the same settings as the new ones: the tables pair them all.
settings="epochs=$epochs steps=$steps alpha=$alpha data=$data"
if [ -f "$out/settings" ] && [ "$(cat "$out/settings")" != "$settings" ]; then
    echo "error: $out holds seeds run with $(cat "$out/settings"), not $settings; run without KEEP=1" >&2
    exit 2
fi
echo "$settings" > "$out/settings"
echo "== $(date -u +%Y-%m-%dT%H:%MZ) on $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; load: $(cut -d' ' -f1-3 /proc/loadavg)"
cargo build --release -p sd-cli --quiet
for seed in $seeds; do
    if [ -f "$out/torch/seed-$seed.checkpoint.json" ]; then
        echo "seed $seed: kept from an earlier run"
        continue
    fi
    rm -rf "$out/ours/seed-$seed"
    start=$(date +%s.%N)
    RAYON_NUM_THREADS=2 target/release/sd-cli -q resnet --data "$data" --train-size 5000 \
        --val-size 5000 --epochs "$epochs" --steps "$steps" --alpha "$alpha" --batch-size 128 \
        --seed "$seed" --out "$out/ours/seed-$seed" > /dev/null
    end=$(date +%s.%N)
    run=$(ls -d "$out/ours/seed-$seed"/*/)
    echo "{\"seed\": $seed, \"seconds\": $(echo "$end - $start" | bc)}" > "$out/ours/seed-$seed.time.json"
    "$python" bench/chain_reference.py --run "$run" --data "$data" --seed "$seed" --threads 2 \
        --out "$out/torch/seed-$seed.json" 2> /dev/null
    "$python" bench/chain_reference.py --run "$run" --data "$data" --check-checkpoint \
        --threads 2 --out "$out/torch/seed-$seed.checkpoint.json"
    echo "seed $seed done"
done
python3 bench/chain_table.py "$out"
