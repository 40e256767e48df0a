#!/usr/bin/env python3
"""Times one training step (forward, backward, Adam) of torchvision's ResNet on random 32x32
images, as crates/sd-resnet/examples/train_step.rs does: median of the timed steps after one
warm-up step, and the peak resident memory. Prints one JSON object.

  python bench/train_step.py DEPTH STEM BATCH [STEPS] [MAX_SECONDS] [--device cpu|cuda] [--threads N]
"""
import argparse
import json
import resource
import statistics
import time

import torch
import torchvision


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("depth", type=int, choices=(18, 34, 50))
    parser.add_argument("stem", choices=("imagenet", "cifar"))
    parser.add_argument("batch", type=int)
    parser.add_argument("steps", type=int, nargs="?", default=10)
    parser.add_argument("max_seconds", type=float, nargs="?", default=60.0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    model = getattr(torchvision.models, f"resnet{args.depth}")(num_classes=10)
    if args.stem == "cifar":
        model.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        model.maxpool = torch.nn.Identity()
    model = model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(args.batch, 3, 32, 32, device=device)
    one_hot = torch.nn.functional.one_hot(torch.arange(args.batch, device=device) % 10, 10).float()

    def step():
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        logits = model(x)
        loss = ((torch.softmax(logits, 1) - one_hot) ** 2).mean()
        loss = loss + 1e-4 * sum(p.norm(2) for p in model.parameters())
        loss.item()
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    step()
    times, budget = [], time.perf_counter()
    while len(times) < args.steps and (len(times) < 3 or time.perf_counter() - budget < args.max_seconds):
        times.append(step())
    median = statistics.median(times)
    print(json.dumps({
        "impl": f"pytorch {torch.__version__}",
        "resnet": args.depth, "stem": args.stem, "batch": args.batch, "device": device.type,
        "steps": len(times),
        "median_s": round(median, 4), "images_per_s": round(args.batch / median, 2),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "threads": torch.get_num_threads(),
        **({"peak_gpu_mib": round(torch.cuda.max_memory_allocated() / 2**20)} if device.type == "cuda" else {}),
    }))


if __name__ == "__main__":
    main()
