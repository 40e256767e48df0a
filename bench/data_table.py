#!/usr/bin/env python3
"""Merges bench/data_reference.py's JSON with criterion's estimates into a markdown table."""
import json
import os
import sys


def median_s(criterion, group, name):
    path = os.path.join(criterion, group, name, "new", "estimates.json")
    with open(path) as f:
        return json.load(f)["median"]["point_estimate"] / 1e9


def main():
    reference_path, criterion = sys.argv[1], sys.argv[2]
    with open(reference_path) as f:
        ref = json.load(f)
    ours_decode = median_s(criterion, "decode", "cifar10_binary_60000_records")
    print("| what | ours | reference | ratio |")
    print("|---|---|---|---|")
    print(
        f"| decode 60,000 CIFAR-10 records (binary files) | {ours_decode * 1e3:.0f} ms | "
        f"numpy fromfile + copies {ref['decode_60000_s'] * 1e3:.0f} ms | "
        f"{ref['decode_60000_s'] / ours_decode:.2f}x |"
    )
    images = 20000
    for transform, label in [("train_transform", "train transform"), ("test_transform", "test transform")]:
        for workers in (0, 1, 2):
            name = f"{transform}_batch128_workers{workers}"
            rate = images / median_s(criterion, "batches", name)
            row = f"| {label}, batch 128, {workers} workers | {rate:,.0f} images/s |"
            if transform == "train_transform" and workers == ref["workers"]:
                pil = ref["pil_transforms_images_per_s"]
                v2 = ref["v2_tensor_transforms_images_per_s"]
                row += (
                    f" torchvision PIL (the original) {pil:,.0f}/s; v2 on tensors {v2:,.0f}/s |"
                    f" {rate / pil:.0f}x; {rate / v2:.0f}x |"
                )
            else:
                row += " | |"
            print(row)
    print(f"\ntorch {ref['torch']}, torchvision {ref['torchvision']}")


if __name__ == "__main__":
    main()
