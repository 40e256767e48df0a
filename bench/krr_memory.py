"""Peak memory of one kernel ridge self-distillation run: sd-cli against numpy and scipy.

Writes the benchmark workload (X ~ U[0, 1]^8, y = sin(sum of x) + 0.1 noise, n training points,
1000 test points) as CSV, then runs, each in its own process, and records the peak resident set:

  sd-cli krr --solver cholesky   10 steps, the limit, test losses   (target: <= 3 x 8 n^2 + 100 MB)
  sd-cli krr --solver eigen      the same with the spectrum
  numpy                          one explicit solve per step (bench/krr_reference.py's numpy_one_run)
  scipy                          eigh (evd driver) and the steps

Run after `cargo build --release -p sd-cli`:
  python3 bench/krr_memory.py --n 4000 --out target/bench/krr_memory.json
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def peak_rss_mib(command):
    """Runs command in a fresh wrapper process; returns (peak RSS of the command in MiB, stdout)."""
    wrapper = (
        "import resource, subprocess, sys\n"
        "out = subprocess.run(sys.argv[1:], check=True, capture_output=True, text=True).stdout\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
        "print(out, end='')\n"
    )
    result = subprocess.run([sys.executable, "-c", wrapper, *command], check=True,
                            capture_output=True, text=True)
    first, _, rest = result.stdout.partition("\n")
    return int(first) / 1024.0, rest


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--out", default="target/bench/krr_memory.json")
    parser.add_argument("--sd-cli", default=os.path.join(ROOT, "target", "release", "sd-cli"))
    args = parser.parse_args()

    sys.path.insert(0, HERE)
    import numpy as np
    import krr_reference as ref

    x, y, xt, yt = ref.data(args.n)
    with tempfile.TemporaryDirectory() as tmp:
        names = [f"x{j}" for j in range(ref.D)] + ["y"]
        train, test = os.path.join(tmp, "train.csv"), os.path.join(tmp, "test.csv")
        np.savetxt(train, np.column_stack([x, y]), delimiter=",", header=",".join(names), comments="", fmt="%.17g")
        np.savetxt(test, np.column_stack([xt, yt]), delimiter=",", header=",".join(names), comments="", fmt="%.17g")
        common = ["krr", "--data", train, "--test", test, "--alpha", str(ref.ALPHA), "--steps", str(ref.STEPS),
                  "--gamma", str(ref.GAMMA), "--lambda", str(ref.LAMBDA), "--format", "json"]
        results = {"n": args.n, "test_points": ref.TEST_POINTS,
                   "bound_mib": (3 * 8 * args.n ** 2 + 100e6) / 2 ** 20, "peak_mib": {}}
        losses = {}
        for solver in ["cholesky", "eigen"]:
            mib, out = peak_rss_mib([args.sd_cli, *common, "--solver", solver])
            results["peak_mib"][f"sd-cli {solver}"] = mib
            losses[solver] = [s["loss"] for s in json.loads(out)["steps"]]
        # The references load the same CSV files, so every process starts from the same data.
        loader = (
            "import sys; sys.path.insert(0, %r)\n"
            "import json, numpy as np, krr_reference as ref\n"
            "tr = np.loadtxt(%r, delimiter=',', skiprows=1); te = np.loadtxt(%r, delimiter=',', skiprows=1)\n"
            "d = (tr[:, :-1], tr[:, -1], te[:, :-1], te[:, -1])\n"
        ) % (HERE, train, test)
        for name, call in [("numpy solve per step", "ref.numpy_one_run(d)"),
                           ("scipy eigh + steps", "ref.scipy_eigh_run(d, [ref.ALPHA], False)")]:
            mib, out = peak_rss_mib([sys.executable, "-c", loader + f"print(json.dumps({call}))"])
            results["peak_mib"][name] = mib
            losses[name] = json.loads(out)[: ref.STEPS]
        # All four computed the same losses.
        for name, values in losses.items():
            assert np.allclose(values, losses["cholesky"], rtol=1e-8), (name, values, losses["cholesky"])
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=2)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
