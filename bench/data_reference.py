#!/usr/bin/env python3
"""Reference timings for sd-data's benchmarks: numpy decoding the CIFAR-10 binary files, and
the original code's input pipeline (torchvision transforms + DataLoader) making augmented batches.

  python bench/data_reference.py --cifar DIR/cifar-10-batches-bin [--images 20000] [--workers 2]

Prints one JSON object (also written to --out). Needs numpy, torch and torchvision.
"""
import argparse
import json
import os
import statistics
import time

import numpy as np

FILES = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)


def decode(directory):
    """The fastest plain-numpy reader: one read per file, a strided view, two copies."""
    labels, pixels = [], []
    for name in FILES:
        records = np.fromfile(os.path.join(directory, name), dtype=np.uint8).reshape(-1, 3073)
        labels.append(records[:, 0].copy())
        pixels.append(records[:, 1:].reshape(-1, 3, 32, 32).copy())
    return np.concatenate(pixels), np.concatenate(labels)


def median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


class PilDataset:
    """What torchvision.datasets.CIFAR10 does per item: a PIL image from HWC bytes, then the
    transform."""

    def __init__(self, hwc, labels, transform):
        self.hwc, self.labels, self.transform = hwc, labels, transform

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        from PIL import Image

        return self.transform(Image.fromarray(self.hwc[i])), int(self.labels[i])


class TensorDataset:
    """The faster modern variant: transforms.v2 on uint8 CHW tensors."""

    def __init__(self, chw, labels, transform):
        self.chw, self.labels, self.transform = chw, labels, transform

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.transform(self.chw[i]), int(self.labels[i])


def loader_rate(dataset, batch, workers, epochs):
    import torch

    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch, shuffle=True, num_workers=workers, persistent_workers=workers > 0
    )
    rates = []
    for epoch in range(epochs + 1):
        start = time.perf_counter()
        for images, labels in loader:
            torch.nn.functional.one_hot(labels, 10).float()
        elapsed = time.perf_counter() - start
        if epoch > 0:  # the first epoch starts the workers
            rates.append(len(dataset) / elapsed)
    return statistics.median(rates)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cifar", required=True, help="a cifar-10-batches-bin directory")
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out")
    args = parser.parse_args()

    result = {"decode_60000_s": median_time(lambda: decode(args.cifar), 5)}
    pixels, labels = decode(args.cifar)
    pixels, labels = pixels[: args.images], labels[: args.images]

    import torch
    import torchvision
    from torchvision import transforms
    from torchvision.transforms import v2

    torch.set_num_threads(1)
    original = transforms.Compose(
        [
            transforms.RandomCrop(32, padding=4),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(MEAN, STD),
        ]
    )
    modern = v2.Compose(
        [
            v2.RandomCrop(32, padding=4),
            v2.RandomHorizontalFlip(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(MEAN, STD),
        ]
    )
    hwc = np.ascontiguousarray(pixels.transpose(0, 2, 3, 1))
    chw = torch.from_numpy(pixels)
    result["torch"] = torch.__version__
    result["torchvision"] = torchvision.__version__
    result["images"] = args.images
    result["batch"] = args.batch
    result["workers"] = args.workers
    result["pil_transforms_images_per_s"] = loader_rate(
        PilDataset(hwc, labels, original), args.batch, args.workers, args.epochs
    )
    result["v2_tensor_transforms_images_per_s"] = loader_rate(
        TensorDataset(chw, labels, modern), args.batch, args.workers, args.epochs
    )
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
