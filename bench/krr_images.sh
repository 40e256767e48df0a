#!/usr/bin/env bash
# Kernel self-distillation on Fashion-MNIST, ours and scikit-learn's side by side in one run:
# `sd-cli krr --images` (exact route, one factorisation for every step and the limit) against
# KernelRidge refitted at every step (bench/krr_images_reference.py). Same problem, same numbers
# expected; prints wall time, peak memory and each step's test accuracy for both.
# Needs: apt-get install -y dataset-fashion-mnist; pip install numpy scikit-learn.
#   bench/krr_images.sh                      # exact, N = 10,000 (about 3 minutes on 2 cores)
#   SD_BENCH_N=2000 bench/krr_images.sh
#   SD_BENCH_REPEAT=3 bench/krr_images.sh     # both sides 3 times, interleaved; medians
#   SD_BENCH_NYSTROM=4000 bench/krr_images.sh # then Nystrom, N = 60,000, M = 4,000, against
#                                             # Nystroem + Ridge refitted per step (15 minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${SD_BENCH_N:-10000}
data=${SD_FASHION_MNIST:-/usr/share/datasets/fashion-mnist}
mkdir -p target/bench
cargo build --release -p sd-cli --quiet

echo "== $(date -u +%Y-%m-%dT%H:%MZ) on $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; load: $(cut -d' ' -f1-3 /proc/loadavg)"
ours=target/bench/krr_images_ours.json
# SD_BENCH_REPEAT=3: both sides three times, interleaved, and the medians (this VM's first touch
# of memory is slow and varies from run to run).
repeat=${SD_BENCH_REPEAT:-1}
: > target/bench/krr_images_ours.times
: > target/bench/krr_images_sklearn.times
for _ in $(seq "$repeat"); do
    /usr/bin/time -f '%e s, %M KB' -o target/bench/krr_images_ours.time \
        target/release/sd-cli krr --images "$data" --train-size "$n" --gamma 0.02 --lambda 0.1 \
        --alpha 0.25 --steps 10 --solver cholesky --format json -q > "$ours"
    cat target/bench/krr_images_ours.time >> target/bench/krr_images_ours.times
    /usr/bin/time -f '%e s, %M KB' -o target/bench/krr_images_sklearn.time \
        python3 bench/krr_images_reference.py --data "$data" --n "$n" > target/bench/krr_images_sklearn.json
    cat target/bench/krr_images_sklearn.time >> target/bench/krr_images_sklearn.times
done
if [ "$repeat" -gt 1 ]; then
    python3 - <<'EOF'
import statistics
def times(path):
    return [float(line.split()[0]) for line in open(path) if line.strip()]
ours = times("target/bench/krr_images_ours.times")
theirs = times("target/bench/krr_images_sklearn.times")
print(f"ours, {len(ours)} runs: {ours} s; median {statistics.median(ours):.2f} s")
print(f"scikit-learn, {len(theirs)} runs: {theirs} s; median {statistics.median(theirs):.2f} s")
print(f"ratio of the medians: {statistics.median(theirs) / statistics.median(ours):.2f}x")
EOF
fi
python3 - "$ours" target/bench/krr_images_sklearn.json <<'EOF'
import json, sys
ours, theirs = (json.load(open(p)) for p in sys.argv[1:3])
t_ours = open("target/bench/krr_images_ours.time").read().strip()
t_theirs = open("target/bench/krr_images_sklearn.time").read().strip()
print(f"N = {theirs['n']}, 10 steps + limit, all 10,000 test images")
print(f"sd-cli krr --images (whole process, reading included): {t_ours}")
print(f"scikit-learn {theirs['sklearn']} KernelRidge per step (whole process): {t_theirs}; "
      f"fits and predictions alone: {theirs['seconds']:.1f} s")
print("step | ours accuracy | sklearn accuracy | ours test MSE | sklearn test MSE")
for a, b in zip(ours["steps"], theirs["steps"]):
    print(f"{a['step']} | {a['accuracy']:.4f} | {b['accuracy']:.4f} | {a['loss']:.6f} | {b['loss']:.6f}")
a, b = ours["limit"], theirs["limit"]
print(f"limit | {a['accuracy']:.4f} | {b['accuracy']:.4f} | {a['loss']:.6f} | {b['loss']:.6f}")
EOF

if [ -n "${SD_BENCH_NYSTROM:-}" ]; then
    m=$SD_BENCH_NYSTROM
    /usr/bin/time -f '%e s, %M KB' -o target/bench/krr_nystrom_ours.time \
        target/release/sd-cli krr --images "$data" --nystrom "$m" --gamma 0.02 --lambda 0.1 \
        --alpha 0.25 --steps 10 --format json -q > target/bench/krr_nystrom_ours.json
    (cd bench && /usr/bin/time -f '%e s, %M KB' -o ../target/bench/krr_nystrom_sklearn.time \
        python3 krr_nystrom_reference.py --data "$data" --m "$m" > ../target/bench/krr_nystrom_sklearn.json)
    python3 - target/bench/krr_nystrom_ours.json target/bench/krr_nystrom_sklearn.json <<'EOF'
import json, sys
ours, theirs = (json.load(open(p)) for p in sys.argv[1:3])
print(f"Nystrom, N = {theirs['n']}, M = {theirs['m']}, 10 steps + limit")
print("sd-cli krr --images --nystrom (whole process):", open("target/bench/krr_nystrom_ours.time").read().strip())
print(f"scikit-learn {theirs['sklearn']} Nystroem + Ridge refitted per step (whole process):",
      open("target/bench/krr_nystrom_sklearn.time").read().strip())
print("step | ours accuracy | sklearn accuracy | ours test MSE | sklearn test MSE")
for a, b in zip(ours["steps"], theirs["steps"]):
    print(f"{a['step']} | {a['accuracy']:.4f} | {b['accuracy']:.4f} | {a['loss']:.6f} | {b['loss']:.6f}")
a, b = ours["limit"], theirs["limit"]
print(f"limit | {a['accuracy']:.4f} | {b['accuracy']:.4f} | {a['loss']:.6f} | {b['loss']:.6f}")
EOF
fi
