"""Merges the kernel ridge benchmark results into the markdown table of docs/benchmarks.md.

  python3 bench/krr_table.py target/bench/krr_reference.json target/criterion [target/bench/krr_memory.json]

Ours: criterion's median (target/criterion/krr/<bench>/<n>/new/estimates.json). Theirs: the
median of bench/krr_reference.py's repeats. Ratios are theirs / ours (> 1: we are faster).
"""

import json
import os
import sys


def ours(criterion, bench, n):
    path = os.path.join(criterion, "krr", bench, str(n), "new", "estimates.json")
    with open(path) as f:
        return json.load(f)["median"]["point_estimate"] / 1e9


def fmt(seconds):
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def main():
    reference_path, criterion = sys.argv[1], sys.argv[2]
    with open(reference_path) as f:
        reference = json.load(f)
    print(f"numpy {reference['numpy']}, scipy {reference['scipy']}, scikit-learn {reference['sklearn']}\n")
    print("| workload | n | ours | reference | reference time | ratio (reference / ours) |")
    print("|---|---:|---:|---|---:|---:|")
    rows = [
        ("Gram matrix (RBF, d = 8)", "gram", ["gram_numpy", "gram_numpy_broadcast"]),
        ("one run: Cholesky, 10 steps, limit, test losses", "one_run_cholesky",
         ["one_run_sklearn", "one_run_numpy_solve", "one_run_scipy_eigh"]),
        ("sweep, Cholesky route: 11 alphas x 10 steps, limits, auto alpha", "sweep_cholesky",
         ["sweep_sklearn", "sweep_scipy_eigh"]),
        ("sweep, eigen route (same work)", "sweep_eigen", ["sweep_sklearn", "sweep_scipy_eigh"]),
    ]
    names = {
        "gram_numpy": "numpy, |a|^2 + |b|^2 - 2 a.b",
        "gram_numpy_broadcast": "numpy, (a - b)^2 broadcast",
        "one_run_sklearn": "scikit-learn KernelRidge refits",
        "one_run_numpy_solve": "numpy solve per step",
        "one_run_scipy_eigh": "scipy eigh (evd) + steps",
        "sweep_sklearn": "scikit-learn KernelRidge refits",
        "sweep_scipy_eigh": "scipy eigh (evd) + steps",
    }
    for n, theirs in sorted(reference["seconds"].items(), key=lambda kv: int(kv[0])):
        for label, bench, keys in rows:
            try:
                mine = ours(criterion, bench, n)
            except FileNotFoundError:
                continue
            for key in keys:
                print(f"| {label} | {n} | {fmt(mine)} | {names[key]} | {fmt(theirs[key])} | {theirs[key] / mine:.1f}x |")
        try:
            chol, eig = ours(criterion, "factor_cholesky", n), ours(criterion, "factor_eigen", n)
            print(f"| factorisation (with the Gram build): Cholesky / eigen | {n} | {fmt(chol)} / {fmt(eig)} | "
                  f"eigen / Cholesky | | {eig / chol:.1f} |")
        except FileNotFoundError:
            pass
    if len(sys.argv) > 3:
        with open(sys.argv[3]) as f:
            memory = json.load(f)
        print(f"\nPeak resident memory, n = {memory['n']}, {memory['test_points']} test points "
              f"(bound 3 x 8 n^2 + 100 MB = {memory['bound_mib']:.0f} MiB):\n")
        print("| process | peak MiB |")
        print("|---|---:|")
        for name, mib in memory["peak_mib"].items():
            print(f"| {name} | {mib:.0f} |")


if __name__ == "__main__":
    main()
