#!/usr/bin/env bash
# Everything the GPU machine is for, in one run of at most 8 minutes:
#   bench/gpu/run.sh RESULTS_DIR
# 1. finds the cu13 libraries of the Python environment (PyTorch's nvidia/ wheels) and sets
#    LD_LIBRARY_PATH; prints the GPU, the driver and the library versions;
# 2. parity: ResNet-18 and -50 with torchvision's weights and batch (bench/torchvision_parity.py,
#    f64 on the CPU): our logits, loss and gradients on CUDA against the CPU and torchvision;
# 3. throughput: a training step (forward, backward, Adam) of ResNet-18 and -50, imagenet stem,
#    batch 16 and 128, ours next to PyTorch eager fp32 (bench/train_step.py --device cuda);
# 4. a short distillation chain on fixture data (2 steps, 1 epoch each) on CUDA.
# Logs and figures go to RESULTS_DIR: run.log, parity-<L>.txt/.json, train_step.jsonl,
# chain.txt and the chain's run directory, summary.md (the tables for docs/benchmarks.md).
#
# Needs the stripped CUDA build of sd-cli at target/cuda/release/sd-cli (`cargo xtask
# cuda-build`; SD_CLI=path to use another) and Python with torch and torchvision (PYTHON=...).
# A check that fails is recorded and the next one runs; the exit status is the number of failed
# checks (64: no binary, 65: its libraries are missing). Every command has a timeout, and a
# deadline of SD_GPU_DEADLINE seconds (default 450) over the whole run skips what would not fit.
#
# Dry run on a machine without a GPU: SD_GPU_DRY_RUN=1 bench/gpu/run.sh RESULTS_DIR does the same
# on the CPU, smaller (ResNet-18, batch 16, 3 steps), with target/release/sd-cli.
set -uo pipefail

results=${1:?usage: bench/gpu/run.sh RESULTS_DIR}
mkdir -p "$results"
results=$(cd "$results" && pwd) # before the cd: a relative path is the caller's
cd "$(dirname "$0")/../.."
exec > >(tee -a "$results/run.log") 2>&1

python=${PYTHON:-python3}
dry=${SD_GPU_DRY_RUN:-0}
if [ "$dry" = 1 ]; then
    device=cpu
    sd_cli=${SD_CLI:-target/release/sd-cli}
    depths="18"
    cases="18:16"
    steps=3
    seconds=5
    fixture="--train 200 --test 50"
    val=50
else
    device=cuda
    sd_cli=${SD_CLI:-target/cuda/release/sd-cli}
    depths="18 50"
    cases="18:16 18:128 50:16 50:128"
    steps=20
    seconds=15
    fixture="--train 500 --test 100"
    val=100
fi
failed=0
deadline=$((SECONDS + ${SD_GPU_DEADLINE:-450}))
part() { echo; echo "== $* ($(date -u +%H:%M:%S), $((deadline - SECONDS)) s left)"; }
fail() { echo "FAILED: $*"; failed=$((failed + 1)); }
# limit CAP: a timeout of CAP seconds, or what is left before the deadline; fails when < 10 s.
limit() {
    local left=$((deadline - SECONDS))
    if [ "$left" -lt 10 ]; then
        echo "SKIPPED (deadline): the rest of this part" >&2
        return 1
    fi
    echo $((left < $1 ? left : $1))
}

part "1. machine and libraries"
if [ ! -x "$sd_cli" ]; then
    echo "error: no sd-cli at $sd_cli: build it with cargo xtask cuda-build (or set SD_CLI)"
    exit 64
fi
# PyTorch's CUDA wheels put the libraries in site-packages/nvidia/<package>/lib (cu13: one
# folder, nvidia/cu13/lib). Our binary links libcudart.so.13, libcublas.so.13, libcublasLt.so.13,
# libcurand.so.10 and libnvrtc.so.13; libcuda.so.1 comes from the driver.
nvidia_root=$("$python" -c 'import nvidia, os; print(list(nvidia.__path__)[0])' 2>/dev/null || true)
if [ -n "$nvidia_root" ]; then
    for lib in "$nvidia_root"/*/lib; do
        [ -d "$lib" ] && LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    done
    export LD_LIBRARY_PATH
fi
echo "nvidia wheels: ${nvidia_root:-none}"
echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
command -v nvidia-smi > /dev/null \
    && nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv
"$python" - <<'PY' || fail "python, torch or torchvision missing"
import torch, torchvision
print(f"torch {torch.__version__} (CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}), "
      f"torchvision {torchvision.__version__}, GPU available: {torch.cuda.is_available()}")
if torch.cuda.is_available():
    print(torch.cuda.get_device_name(0))
PY
ls "$nvidia_root"/cu13/lib 2> /dev/null | grep -E '^lib(cudart|cublas|cublasLt|curand|nvrtc|cudnn)\.so' | tr '\n' ' '
echo
if ldd "$sd_cli" | grep -E 'cuda|cublas|curand|nvrtc'; then
    if ldd "$sd_cli" | grep -q 'not found'; then
        fail "libraries of $sd_cli not found: $(ldd "$sd_cli" | grep 'not found' | tr -s ' \t' ' ')"
        exit 65
    fi
fi
echo "sd-cli: $sd_cli ($(du -h "$sd_cli" | cut -f1)), device $device"

part "2. parity with torchvision and the CPU"
for depth in $depths; do
    if ! t=$(limit 120) || ! timeout "$t" "$python" bench/torchvision_parity.py --depth "$depth" --out "$results/parity"; then
        fail "bench/torchvision_parity.py --depth $depth"
        continue
    fi
    if t=$(limit 120) && timeout "$t" "$sd_cli" bench parity "$results/parity" --resnet "$depth" --device "$device" \
        > "$results/parity-$depth.txt"; then
        cat "$results/parity-$depth.txt"
    else
        cat "$results/parity-$depth.txt"
        fail "parity of ResNet-$depth on $device"
    fi
done
rm -f "$results"/parity/*.safetensors # large, and rewritable

part "3. training-step throughput, ours and PyTorch"
: > "$results/train_step.jsonl"
for case in $cases; do
    IFS=: read -r depth batch <<< "$case"
    t=$(limit 90) && timeout "$t" "$sd_cli" bench train-step --resnet "$depth" --batch "$batch" --device "$device" \
        --steps "$steps" --max-seconds "$seconds" >> "$results/train_step.jsonl" \
        || fail "sd-cli bench train-step --resnet $depth --batch $batch"
    t=$(limit 90) && timeout "$t" "$python" bench/train_step.py "$depth" imagenet "$batch" "$steps" "$seconds" \
        --device "$device" --threads "$(nproc)" >> "$results/train_step.jsonl" \
        || fail "bench/train_step.py $depth imagenet $batch"
done
cat "$results/train_step.jsonl"

part "4. a distillation chain on fixture data"
# shellcheck disable=SC2086 # $fixture is two flags
"$sd_cli" -q data fixture --out "$results/fixture" $fixture > /dev/null \
    || fail "sd-cli data fixture"
if t=$(limit 240) && timeout "$t" "$sd_cli" resnet --data "$results/fixture" --alpha 0.5 --epochs 1 \
    --steps 2 --val-size "$val" --batch-size 32 --device "$device" \
    --out "$results/chain" > "$results/chain.txt"; then
    cat "$results/chain.txt"
    ls "$results"/chain/*/step_1/
else
    fail "the chain on $device"
fi
rm -rf "$results/fixture"
find "$results/chain" -name '*.safetensors' -delete 2> /dev/null # 45 MB each; the JSON stays

part "summary"
"$python" - "$results" "$device" <<'PY' | tee "$results/summary.md"
import json, os, sys
results, device = sys.argv[1], sys.argv[2]
print(f"## GPU run ({device})\n")
for name in sorted(os.listdir(results)):
    if name.startswith("parity-") and name.endswith(".txt"):
        lines = open(os.path.join(results, name)).read().splitlines()
        print("```\n" + "\n".join(l for l in lines if not l.startswith("[")) + "\n```\n")
rows = [json.loads(l) for l in open(os.path.join(results, "train_step.jsonl")) if l.strip()]
ours = [r for r in rows if r["impl"].startswith("sd-resnet")]
theirs = {(r["resnet"], r["batch"]): r for r in rows if r["impl"].startswith("pytorch")}
print("| model | batch | ours images/s | PyTorch images/s | ratio |\n|---|---:|---:|---:|---:|")
for r in ours:
    t = theirs.get((r["resnet"], r["batch"]))
    ratio = f"{r['images_per_s'] / t['images_per_s']:.2f}x" if t else "-"
    tp = f"{t['images_per_s']:.1f}" if t else "-"
    print(f"| ResNet-{r['resnet']} | {r['batch']} | {r['images_per_s']:.1f} | {tp} | {ratio} |")
chain = os.path.join(results, "chain.txt")
if os.path.exists(chain):
    print("\n```\n" + open(chain).read() + "```")
PY
echo
echo "checks failed: $failed; results in $results"
exit "$failed"
