#!/usr/bin/env python3
"""torchvision's logits for ResNet-18 weights anyone can regenerate: the reference of
crates/sd-resnet/tests/varbuilder.rs, which builds the same weights, saves them as safetensors
under torchvision's names, loads them through a candle_nn::VarBuilder and compares the logits.

  python bench/torchvision_varbuilder.py          # needs torch and torchvision (numpy comes with them)

Every value comes from SplitMix64 on integers (the same in numpy and Rust), mapped to [-1, 1) and
scaled per tensor, then rounded to float32: conv weights uniform with Kaiming's std (fan_out),
BatchNorm weight 1 + 0.2 v, bias 0.1 v, running mean 0.1 v, running variance in [1, 1.5),
num_batches_tracked 7, fc weight and bias v / sqrt(512). The input is two 3 x 32 x 32 images.
torchvision computes in float64 from those float32 values, in evaluation mode. Writes
crates/sd-resnet/tests/data/torchvision_resnet18_logits.json.
"""
import json
import math
import os

import numpy as np
import torch
import torchvision

GOLDEN = 0x9E3779B97F4A7C15
INPUT_INDEX = 1000
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def uniform(index, count):
    """count values in [-1, 1) from SplitMix64 at seed (index + 1) * GOLDEN."""
    with np.errstate(over="ignore"):
        seed = np.uint64(((index + 1) * GOLDEN) % 2**64)
        z = seed + np.arange(count, dtype=np.uint64) * np.uint64(GOLDEN)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53 * 2.0 - 1.0


def value(index, name, shape):
    count = int(np.prod(shape)) if shape else 1
    v = uniform(index, count)
    leaf = name.rsplit(".", 1)[-1]
    if name.startswith("fc."):
        x = v / math.sqrt(512.0)
    elif len(shape) == 4:
        fan_out = shape[0] * shape[2] * shape[3]
        x = v * math.sqrt(6.0 / fan_out)
    elif leaf == "weight":
        x = 1.0 + 0.2 * v
    elif leaf in ("bias", "running_mean"):
        x = 0.1 * v
    elif leaf == "running_var":
        x = 1.0 + 0.25 * (v + 1.0)
    else:
        raise ValueError(name)
    return x.astype(np.float32).reshape(shape)


def main():
    model = torchvision.models.resnet18(num_classes=10)
    state = {}
    for index, (name, tensor) in enumerate(model.state_dict().items()):
        if name.endswith("num_batches_tracked"):
            state[name] = torch.tensor(7, dtype=torch.int64)
        else:
            state[name] = torch.from_numpy(value(index, name, tuple(tensor.shape)).copy())
    model.load_state_dict(state)
    # What safetensors.torch.save_file(model.state_dict(), ...) would store, entry by entry: dtype,
    # shape and a checksum of the values' bits (sum of word_i * (2 i + 1) mod 2^64, words the
    # u32 of each float32 or the u64 of each int64). The test checks that the file it builds
    # holds exactly these tensors.
    entries = {}
    for name, tensor in model.state_dict().items():
        array = tensor.contiguous().numpy()
        words = array.reshape(-1).view(np.uint32 if array.dtype == np.float32 else np.uint64)
        with np.errstate(over="ignore"):
            odd = np.arange(words.size, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
            checksum = int(np.sum(words.astype(np.uint64) * odd, dtype=np.uint64))
        entries[name] = {"dtype": str(array.dtype), "shape": list(array.shape), "checksum": checksum}
    model = model.double().eval()
    x = torch.from_numpy(uniform(INPUT_INDEX, 2 * 3 * 32 * 32).astype(np.float32).reshape(2, 3, 32, 32))
    with torch.no_grad():
        logits = model(x.double())
    out = os.path.join(ROOT, "crates/sd-resnet/tests/data/torchvision_resnet18_logits.json")
    with open(out, "w") as f:
        json.dump(
            {
                "source": "bench/torchvision_varbuilder.py",
                "torch": torch.__version__,
                "torchvision": torchvision.__version__,
                "state_dict": entries,
                "eval_logits": logits.tolist(),
            },
            f,
            indent=1,
        )
        f.write("\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
