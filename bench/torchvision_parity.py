#!/usr/bin/env python3
"""Writes a torchvision ResNet's weights and a reference forward pass as safetensors, for
`cargo run --release -p sd-train --example torchvision_parity` (and sd-resnet's
`torchvision_weights` example) to compare against.

  python bench/torchvision_parity.py --depth 18 --out target/parity   # needs torch, torchvision, safetensors

The model's BatchNorm running statistics are first moved by a few training-mode batches, so the
evaluation-mode comparison exercises them; then it records, for one input batch:
eval-mode logits, train-mode logits, and the gradient of the original's first-step loss
MSE(softmax(logits), onehot) with respect to the input and to conv1.weight (train mode).
"""
import argparse
import json
import os
import struct

import torch
import torchvision

try:
    from safetensors.torch import save_file
except ImportError:  # GPU machines may have torch without safetensors: the format is simple.
    def save_file(tensors, path):
        names = {torch.float32: "F32", torch.float64: "F64", torch.int64: "I64"}
        header, blobs, offset = {}, [], 0
        for name, tensor in tensors.items():
            data = tensor.detach().cpu().contiguous().numpy().tobytes()
            header[name] = {"dtype": names[tensor.dtype], "shape": list(tensor.shape),
                            "data_offsets": [offset, offset + len(data)]}
            blobs.append(data)
            offset += len(data)
        text = json.dumps(header).encode()
        text += b" " * (-len(text) % 8)
        with open(path, "wb") as f:
            f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--depth", type=int, default=18, choices=(18, 34, 50))
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--out", default="target/parity")
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(2)
    model = getattr(torchvision.models, f"resnet{args.depth}")(num_classes=10).double()
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(8, 3, 32, 32, dtype=torch.float64))
    x = torch.randn(args.batch, 3, 32, 32, dtype=torch.float64)
    labels = torch.arange(args.batch) % 10
    one_hot = torch.nn.functional.one_hot(labels, 10).double()
    # Weights as float32 (what we train in); the reference computed in float64 from those values.
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    model.load_state_dict({k: (v.double() if v.is_floating_point() else v) for k, v in state.items()})
    x = x.float().double()
    model.eval()
    with torch.no_grad():
        eval_logits = model(x)
    model.train()
    x.requires_grad_(True)
    train_logits = model(x)
    loss = ((torch.softmax(train_logits, dim=1) - one_hot) ** 2).mean()
    loss.backward()
    os.makedirs(args.out, exist_ok=True)
    save_file(state, os.path.join(args.out, f"resnet{args.depth}.safetensors"))
    save_file(
        {
            "input": x.detach().float().contiguous(),
            "one_hot": one_hot.float().contiguous(),
            "eval_logits": eval_logits.contiguous(),
            "train_logits": train_logits.detach().contiguous(),
            "loss": loss.detach().reshape(1),
            "input_grad": x.grad.contiguous(),
            "conv1_grad": model.conv1.weight.grad.contiguous(),
        },
        os.path.join(args.out, f"resnet{args.depth}-io.safetensors"),
    )
    print(f"wrote {args.out}/resnet{args.depth}.safetensors and -io.safetensors")


if __name__ == "__main__":
    main()
