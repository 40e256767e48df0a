"""scikit-learn's side of the Nyström benchmark (bench/krr_images.sh with SD_BENCH_NYSTROM=1):
self-distillation on all 60,000 Fashion-MNIST training images with `Nystroem(n_components=M)` and
`Ridge`, the pipeline refitted at every step as the issue states it, and the limit (ridge
lambda / alpha). Ridge's `alpha` is our lambda on the Nyström features (`Phi = K_NM K_MM^-1/2`),
which is the same model as ours up to the landmark draw. Prints JSON: seconds, per-step accuracy
and test MSE.

Run: python3 bench/krr_nystrom_reference.py --data /usr/share/datasets/fashion-mnist --m 4000
"""

import argparse
import json
import time

import numpy as np
import sklearn
from sklearn.kernel_approximation import Nystroem
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline

from krr_images_reference import load


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True)
    parser.add_argument("--m", type=int, default=4000)
    parser.add_argument("--gamma", type=float, default=0.02)
    parser.add_argument("--lam", type=float, default=0.1)
    parser.add_argument("--alpha", type=float, default=0.25)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    x, labels, onehot, x_test, test_labels, onehot_test = load(args.data)

    def fit(targets, lam):
        return make_pipeline(
            Nystroem(kernel="rbf", gamma=args.gamma, n_components=args.m, random_state=0),
            Ridge(alpha=lam, fit_intercept=False),
        ).fit(x, targets)

    def scores(model):
        predictions = model.predict(x_test)
        return {
            "accuracy": float(np.mean(predictions.argmax(1) == test_labels)),
            "loss": float(np.mean((predictions - onehot_test) ** 2)),
        }

    started = time.perf_counter()
    steps, targets = [], onehot
    for step in range(args.steps):
        model = fit(targets, args.lam)
        steps.append({"step": step, **scores(model)})
        targets = args.alpha * onehot + (1 - args.alpha) * model.predict(x)
    limit = scores(fit(onehot, args.lam / args.alpha))
    print(json.dumps({"n": len(x), "m": args.m, "seconds": time.perf_counter() - started,
                      "steps": steps, "limit": limit, "sklearn": sklearn.__version__}, indent=1))


if __name__ == "__main__":
    main()
