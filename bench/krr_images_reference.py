"""scikit-learn's side of bench/krr_images.sh: kernel self-distillation on Fashion-MNIST, refitting
KernelRidge at every step, as a scikit-learn user would.

The problem of `sd-cli krr --images DIR --train-size N --gamma G --lambda L --alpha A --steps T`:
the first N training images in file order and all 10,000 test images, pixels / 255, one-hot
targets; step 0 fits the labels, step t fits A * onehot + (1 - A) * (step t-1's training
predictions); the limit is the ridge fit with lambda / A. KernelRidge's `alpha` is our lambda (both
solve (K + lambda I) c = y, unscaled). Prints JSON: seconds in all (reading excluded) and the test
accuracy and MSE of every step and of the limit.

Run: python3 bench/krr_images_reference.py --data /usr/share/datasets/fashion-mnist --n 10000
"""

import argparse
import gzip
import json
import os
import platform
import time

import numpy as np
import sklearn
from sklearn.kernel_ridge import KernelRidge


def idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def load(data, n=None):
    """The first n training images (all without n) and all test images: pixels / 255 as float64
    rows, labels, one-hot targets."""
    x = idx(os.path.join(data, "train-images-idx3-ubyte.gz"))[:n]
    labels = idx(os.path.join(data, "train-labels-idx1-ubyte.gz"))[:n]
    x_test = idx(os.path.join(data, "t10k-images-idx3-ubyte.gz"))
    test_labels = idx(os.path.join(data, "t10k-labels-idx1-ubyte.gz"))
    x = x.reshape(len(x), -1).astype(np.float64) / 255.0
    x_test = x_test.reshape(len(x_test), -1).astype(np.float64) / 255.0
    return x, labels, np.eye(10)[labels], x_test, test_labels, np.eye(10)[test_labels]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True)
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--gamma", type=float, default=0.02)
    parser.add_argument("--lam", type=float, default=0.1)
    parser.add_argument("--alpha", type=float, default=0.25)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()

    x, labels, onehot, x_test, test_labels, onehot_test = load(args.data, args.n)

    def scores(model):
        predictions = model.predict(x_test)
        return {
            "accuracy": float(np.mean(predictions.argmax(1) == test_labels)),
            "loss": float(np.mean((predictions - onehot_test) ** 2)),
        }

    started = time.perf_counter()
    steps = []
    targets = onehot
    for step in range(args.steps):
        model = KernelRidge(kernel="rbf", gamma=args.gamma, alpha=args.lam).fit(x, targets)
        steps.append({"step": step, **scores(model)})
        fitted = model.predict(x)
        targets = args.alpha * onehot + (1 - args.alpha) * fitted
    limit = KernelRidge(kernel="rbf", gamma=args.gamma, alpha=args.lam / args.alpha).fit(x, onehot)
    limit_scores = scores(limit)
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "n": args.n,
                "seconds": seconds,
                "steps": steps,
                "limit": limit_scores,
                "sklearn": sklearn.__version__,
                "numpy": np.__version__,
                "python": platform.python_version(),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
