"""Reference timings for kernel ridge self-distillation: numpy, scipy and scikit-learn.

The workload of crates/sd-kernel/benches/krr.rs: X ~ U[0, 1]^8, y = sin(sum of x) + 0.1 noise,
RBF gamma = 0.5, lambda = 0.01, alpha = 0.35, 10 steps, 1000 test points.

  one_run   10 steps, the limit, test predictions of each (one alpha)
  sweep     alpha in {0, 0.1, ..., 1}: 10 steps and the limit each, plus the optimal alpha per step
            against the test data (two fits per step), test predictions of all
  gram      building the n x n kernel matrix

Each figure is the median of --repeats runs (the Gram matrix: at least 5, after one untimed call;
scikit-learn's sweep: --sweep-repeats);
the machine's BLAS threads are left as they are (2 cores here). Writes JSON to --out and prints it.

Run: python3 bench/krr_reference.py --sizes 1000,2000,4000 --out target/bench/krr_reference.json
"""

import argparse
import json
import os
import platform
import statistics
import time

import numpy as np
import scipy
import scipy.linalg
import sklearn
from sklearn.kernel_ridge import KernelRidge

D = 8
TEST_POINTS = 1000
GAMMA = 0.5
LAMBDA = 0.01
ALPHA = 0.35
STEPS = 10
SWEEP = [k / 10 for k in range(11)]


def data(n, seed=42):
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(n, D))
    y = np.sin(x.sum(axis=1)) + 0.1 * rng.standard_normal(n)
    x_test = rng.uniform(size=(TEST_POINTS, D))
    y_test = np.sin(x_test.sum(axis=1))
    return x, y, x_test, y_test


def rbf(a, b):
    """numpy's usual way: |a|^2 + |b|^2 - 2 a.b, then exp."""
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.exp(-GAMMA * np.maximum(sq, 0.0))


def rbf_broadcast(a, b):
    """numpy's exact way: the n x n x d tensor of differences."""
    return np.exp(-GAMMA * ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))


def mse(p, r):
    return float(np.mean((p - r) ** 2))


# --- scikit-learn: refit KernelRidge on the new targets every step -------------------------------

def sklearn_chain(x, y, x_test, y_test, alpha, steps):
    losses, targets = [], y
    for step in range(steps):
        model = KernelRidge(alpha=LAMBDA, kernel="rbf", gamma=GAMMA).fit(x, targets)
        losses.append(mse(model.predict(x_test), y_test))
        targets = alpha * y + (1 - alpha) * model.predict(x)
    return losses


def sklearn_limit(x, y, x_test, y_test, alpha):
    if alpha == 0:
        return mse(np.zeros_like(y_test), y_test)
    model = KernelRidge(alpha=LAMBDA / alpha, kernel="rbf", gamma=GAMMA).fit(x, y)
    return mse(model.predict(x_test), y_test)


def sklearn_optimal(x, y, x_test, y_test, steps):
    first = KernelRidge(alpha=LAMBDA, kernel="rbf", gamma=GAMMA).fit(x, y)
    u1, teacher = first.predict(x_test), first.predict(x)
    losses = [mse(u1, y_test)]
    for _ in range(1, steps):
        student = KernelRidge(alpha=LAMBDA, kernel="rbf", gamma=GAMMA).fit(x, teacher)
        u0 = student.predict(x_test)
        a = float(np.dot(y_test - u0, u1 - u0) / np.dot(u1 - u0, u1 - u0))
        model = KernelRidge(alpha=LAMBDA, kernel="rbf", gamma=GAMMA).fit(x, a * y + (1 - a) * teacher)
        losses.append(mse(model.predict(x_test), y_test))
        teacher = model.predict(x)
    return losses


def sklearn_one_run(d):
    x, y, xt, yt = d
    return sklearn_chain(x, y, xt, yt, ALPHA, STEPS) + [sklearn_limit(x, y, xt, yt, ALPHA)]


def sklearn_sweep(d):
    x, y, xt, yt = d
    out = []
    for alpha in SWEEP:
        out += sklearn_chain(x, y, xt, yt, alpha, STEPS) + [sklearn_limit(x, y, xt, yt, alpha)]
    return out + sklearn_optimal(x, y, xt, yt, STEPS)


# --- numpy: one explicit solve per step -----------------------------------------------------------

def numpy_one_run(d):
    x, y, xt, yt = d
    k, kt = rbf(x, x), rbf(xt, x)
    n = len(y)
    losses, targets = [], y
    for _ in range(STEPS):
        c = np.linalg.solve(k + LAMBDA * np.eye(n), targets)
        losses.append(mse(kt @ c, yt))
        targets = ALPHA * y + (1 - ALPHA) * (k @ c)
    c = np.linalg.solve(k + LAMBDA / ALPHA * np.eye(n), y)
    return losses + [mse(kt @ c, yt)]


# --- scipy: one eigendecomposition (evd driver), then O(n^2) per step ------------------------------

def scipy_eigh_run(d, alphas, optimal):
    x, y, xt, yt = d
    k, kt = rbf(x, x), rbf(xt, x)
    w, v = scipy.linalg.eigh(k, driver="evd")
    w = np.maximum(w, 0.0)
    proj = v.T @ y
    a = w / (w + LAMBDA)
    out = []

    def predict(coef_diag):
        return kt @ (v @ (coef_diag * proj))

    for alpha in alphas:
        b_prev = np.ones_like(w)
        for step in range(STEPS):
            mix = alpha + (1 - alpha) * b_prev if step > 0 else np.ones_like(w)
            out.append(mse(predict(mix / (w + LAMBDA)), yt))
            b_prev = a * mix
        if alpha > 0:
            out.append(mse(predict(1.0 / (w + LAMBDA / alpha)), yt))
        else:
            out.append(mse(np.zeros_like(yt), yt))
    if optimal:
        u1 = predict(1.0 / (w + LAMBDA))
        out.append(mse(u1, yt))
        b_prev = a.copy()
        for _ in range(1, STEPS):
            u0 = predict(b_prev / (w + LAMBDA))
            al = float(np.dot(yt - u0, u1 - u0) / np.dot(u1 - u0, u1 - u0))
            mix = al + (1 - al) * b_prev
            out.append(mse(predict(mix / (w + LAMBDA)), yt))
            b_prev = a * mix
    return out


def timed(fn, *args, repeats=3, warmup=False):
    """Median of `repeats` timed calls, after one untimed call when `warmup` (the first call of a
    numpy routine pays for fresh memory and lazy initialisation)."""
    if warmup:
        fn(*args)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn(*args)
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,2000,4000")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sweep-repeats", type=int, default=1, help="scikit-learn's sweep refits 142 times")
    parser.add_argument("--out", default="target/bench/krr_reference.json")
    args = parser.parse_args()

    results = {
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "sklearn": sklearn.__version__,
        "seconds": {},
    }
    for n in [int(s) for s in args.sizes.split(",")]:
        d = data(n)
        r = {}
        r["gram_numpy"], _ = timed(rbf, d[0], d[0], repeats=max(args.repeats, 5), warmup=True)
        r["gram_numpy_broadcast"], _ = timed(rbf_broadcast, d[0], d[0], repeats=max(args.repeats, 5), warmup=True)
        r["one_run_sklearn"], ref = timed(sklearn_one_run, d, repeats=args.repeats)
        r["one_run_numpy_solve"], mine = timed(numpy_one_run, d, repeats=args.repeats)
        assert np.allclose(ref, mine, rtol=1e-6), (ref, mine)
        r["one_run_scipy_eigh"], mine = timed(scipy_eigh_run, d, [ALPHA], False, repeats=args.repeats)
        assert np.allclose(ref, mine, rtol=1e-6), (ref, mine)
        r["sweep_scipy_eigh"], fast = timed(scipy_eigh_run, d, SWEEP, True, repeats=args.repeats)
        r["sweep_sklearn"], slow = timed(sklearn_sweep, d, repeats=args.sweep_repeats)
        assert np.allclose(fast, slow, rtol=1e-6)
        results["seconds"][str(n)] = r
        print(n, json.dumps(r), flush=True)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=2)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
