#!/usr/bin/env python3
"""Writes the names, shapes and dtypes of torchvision's ResNet state_dicts (10 classes) as JSON:
the reference of crates/sd-resnet/tests/model.rs.

  python bench/torchvision_state_dicts.py > crates/sd-resnet/tests/data/torchvision_state_dicts.json
"""
import json

import torch
import torchvision

out = {"torch": torch.__version__, "torchvision": torchvision.__version__, "models": {}}
for depth in (18, 34, 50):
    model = getattr(torchvision.models, f"resnet{depth}")(num_classes=10)
    out["models"][str(depth)] = {
        "trainable": sum(p.numel() for p in model.parameters()),
        "state_dict": [
            [name, list(t.shape), str(t.dtype).removeprefix("torch.")]
            for name, t in model.state_dict().items()
        ],
    }
print(json.dumps(out, indent=0))
