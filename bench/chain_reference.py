#!/usr/bin/env python3
"""The original's self-distillation loop in plain PyTorch, on the images of one of our chains.

An independent re-implementation of what `sd-cli resnet` trains (the original's
self_distiller.py without Lightning), for `bench/chain_compare.sh`: it reads a run directory of
`sd-cli resnet` (its `chain.json` for the settings, its `split.json` for the very images and
labels of each split) and trains the same chain with torchvision's ResNet and its own random
numbers:

- step 0 fits the labels, `MSE(softmax(z), onehot)`; step k >= 1 a fresh network minimises
  `alpha MSE(softmax(z), onehot) + (1 - alpha) MSE(softmax(z), softmax(teacher(x)))`, the
  teacher being step k-1's final-epoch model in evaluation mode, run on the same augmented
  batch; plus `reg_coef * sum_p |p|_2`;
- Adam, a new order every epoch, validation accuracy after every epoch; the step's test accuracy
  of its final-epoch model and of its best model by validation accuracy;
- 28 x 28 grey images zero-padded to 32 x 32, then RandomCrop(32, padding=4) and a horizontal
  flip for training, normalised with mean 0.2860 and std 0.3530.

With `--check-checkpoint` it instead loads the run's step-0 best checkpoint into torchvision's
model and counts its correct test predictions, to compare with the accuracy the run recorded.

Writes one JSON object (to --out, or stdout).
"""

import argparse
import copy
import glob
import gzip
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
import torchvision

MEAN, STD = 0.2860, 0.3530


def idx_images(path):
    with gzip.open(path) as f:
        data = f.read()
    return np.frombuffer(data, np.uint8, offset=16).reshape(-1, 28, 28)


def load_split(data_dir, run_dir):
    """Tensors [N, 1, 32, 32] (normalised, zero-padded) and labels of each split of the run."""
    files = {
        "train": idx_images(os.path.join(data_dir, "train-images-idx3-ubyte.gz")),
        "test": idx_images(os.path.join(data_dir, "t10k-images-idx3-ubyte.gz")),
    }
    with open(os.path.join(run_dir, "split.json")) as f:
        split = json.load(f)
    out = {}
    for name in ("train", "val", "test"):
        part = split[name]
        images = files[part["file"]][np.asarray(part["indices"], dtype=np.int64)]
        x = torch.tensor(images, dtype=torch.float32) / 255.0
        x = F.pad(x, (2, 2, 2, 2))  # 28 -> 32, centred, zero pixels
        x = ((x - MEAN) / STD).unsqueeze(1)
        y = torch.tensor(part["labels"], dtype=torch.int64)
        out[name] = (x, y)
    return out


def augment(x, generator):
    """RandomCrop(32, padding=4) with zero pixels, then RandomHorizontalFlip, on a batch."""
    n = x.shape[0]
    padded = F.pad(x, (4, 4, 4, 4), value=(0.0 - MEAN) / STD)
    dy = torch.randint(0, 9, (n,), generator=generator)
    dx = torch.randint(0, 9, (n,), generator=generator)
    ar = torch.arange(32)
    rows = (dy[:, None] + ar)[:, :, None]
    cols = (dx[:, None] + ar)[:, None, :]
    out = padded[torch.arange(n)[:, None, None], 0, rows, cols].unsqueeze(1)
    flip = torch.rand(n, generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], out.flip(-1), out)


def network(width, stem, classes=10):
    if width != 64:
        sys.exit("chain_reference.py builds torchvision's network (width 64) only")
    model = torchvision.models.resnet18(num_classes=classes)
    if stem == "cifar":
        model.conv1 = torch.nn.Conv2d(1, 64, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = torch.nn.Identity()
    else:
        model.conv1 = torch.nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    torch.nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    return model


@torch.no_grad()
def accuracy(model, x, y, batch=1000):
    model.eval()
    correct = 0
    for i in range(0, len(x), batch):
        correct += (model(x[i : i + batch]).argmax(1) == y[i : i + batch]).sum().item()
    return correct / len(x)


def train_step(step, alpha, teacher, data, s, generator):
    model = network(s["width"], s["stem"])
    optimizer = torch.optim.Adam(model.parameters(), lr=s["lr"])
    x, y = data["train"]
    onehot = F.one_hot(y, 10).float()
    best = (-1.0, None, -1)
    epochs = []
    for epoch in range(s["epochs"]):
        started = time.time()
        model.train()
        order = torch.randperm(len(x), generator=generator)
        total_loss, correct = 0.0, 0
        for i in range(0, len(x), s["batch_size"]):
            b = order[i : i + s["batch_size"]]
            images = augment(x[b], generator)
            logits = model(images)
            probabilities = torch.softmax(logits, 1)
            loss = ((probabilities - onehot[b]) ** 2).mean()
            if teacher is not None:
                # The original's form (self_distiller.py): alpha MSE(p, onehot) + (1 - alpha)
                # MSE(p, softmax(teacher)); the same gradient as MSE against the mixed target,
                # a different value.
                with torch.no_grad():
                    soft = torch.softmax(teacher(images), 1)
                loss = alpha * loss + (1 - alpha) * ((probabilities - soft) ** 2).mean()
            loss = loss + s["reg_coef"] * sum(p.norm() for p in model.parameters())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total_loss += loss.item() * len(b)
            correct += (logits.argmax(1) == y[b]).sum().item()
        val_acc = accuracy(model, *data["val"])
        if val_acc > best[0]:
            best = (val_acc, copy.deepcopy(model.state_dict()), epoch)
        epochs.append(
            {
                "epoch": epoch,
                "train_loss": total_loss / len(x),
                "train_acc": correct / len(x),
                "val_acc": val_acc,
                "seconds": time.time() - started,
            }
        )
    final_acc = accuracy(model, *data["test"])
    best_model = network(s["width"], s["stem"])
    best_model.load_state_dict(best[1])
    best_acc = accuracy(best_model, *data["test"])
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    result = {
        "step": step,
        "alpha": alpha if teacher is not None else 1.0,
        "test_acc_final": final_acc,
        "test_acc_best": best_acc,
        "best_epoch": best[2],
        "epochs": epochs,
    }
    return model, result


def train_chain(args):
    with open(os.path.join(args.run, "chain.json")) as f:
        record = json.load(f)
    s = dict(record["settings"])
    s.setdefault("width", 64)
    if s.get("loss", "mse") != "mse" or s.get("teacher_mode", "eval") != "eval":
        sys.exit("chain_reference.py implements the mse loss with an evaluation-mode teacher")
    if s.get("lr_schedule", "constant") != "constant":
        sys.exit("chain_reference.py implements a constant learning rate")
    alpha = record["alpha"]
    if not isinstance(alpha, (int, float)):
        sys.exit("chain_reference.py implements a fixed alpha")
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    started = time.time()
    data = load_split(args.data, args.run)
    teacher, steps = None, []
    for step in range(record["steps"]):
        teacher, result = train_step(step, float(alpha), teacher, data, s, generator)
        steps.append(result)
        print(
            f"step {step}: test accuracy final {result['test_acc_final']:.4f}, "
            f"best {result['test_acc_best']:.4f}",
            file=sys.stderr,
        )
    return {
        "run": args.run,
        "seed": args.seed,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "seconds": time.time() - started,
        "steps": steps,
    }


def check_checkpoint(args):
    """Step 0's best checkpoint of the run in torchvision: its test accuracy, and the run's."""
    import safetensors.torch

    with open(os.path.join(args.run, "test.jsonl")) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    row = next(r for r in rows if r["step"] == 0)
    [path] = glob.glob(os.path.join(args.run, "step_0", f"epoch={row['best_epoch']:02}-*.safetensors"))
    with open(os.path.join(args.run, "chain.json")) as f:
        s = json.load(f)["settings"]
    model = network(s.get("width", 64), s["stem"])
    model.load_state_dict(safetensors.torch.load_file(path))
    x, y = load_split(args.data, args.run)["test"]
    torch.set_num_threads(args.threads or torch.get_num_threads())
    acc = accuracy(model, x, y)
    return {
        "run": args.run,
        "checkpoint": path,
        "recorded_test_acc_best": row["test_acc_best"],
        "torchvision_test_acc": acc,
        "images": len(y),
        "correct_recorded": round(row["test_acc_best"] * len(y)),
        "correct_torchvision": round(acc * len(y)),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True, help="a run directory of sd-cli resnet")
    parser.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--seed", type=int, default=0, help="PyTorch's seed")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: its default)")
    parser.add_argument("--check-checkpoint", action="store_true")
    parser.add_argument("--out", help="JSON output (default: stdout)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    result = check_checkpoint(args) if args.check_checkpoint else train_chain(args)
    text = json.dumps(result, indent=1)
    if args.out:
        with open(args.out + ".tmp", "w") as f:
            f.write(text)
        os.replace(args.out + ".tmp", args.out)
    else:
        print(text)


if __name__ == "__main__":
    main()
