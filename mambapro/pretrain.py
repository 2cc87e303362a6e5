"""CLIP-style proxy pre-training of the tiny backbone (embedded default only).

The paper freezes a CLIP image encoder pre-trained on web image-text pairs.  On the CPU default no such weights
exist for a tiny tower, so we pre-train one the same way: an open_clip CLIP (image and text towers, open_clip's own
contrastive ``ClipLoss``) on the synthetic benchmark's captioned RGB images of identities disjoint from the ReID
splits.  Like CLIP's data, the captions name coarse attributes, never identity, and NIR/TIR are never seen.  At paper
scale this stage is skipped and OpenAI's weights are used.

Evidence that it learned something: zero-shot caption retrieval on held-out images (each image is matched against
every distinct held-out caption) and the per-attribute accuracy implied by the retrieved caption, each beside its
chance level.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms as T
from tqdm.auto import tqdm

import mambapro.backbone  # noqa: F401  (registers the tiny model configs with open_clip)
from mambapro.data.synthetic import read_caption_set
from mambapro.results import save_torch, write_json


class _CaptionDataset(torch.utils.data.Dataset):
    def __init__(self, records, transform, tokenizer):
        self.records, self.transform = records, transform
        self.tokens = tokenizer([r["caption"] for r in records])

    def __len__(self):
        return len(self.records)

    def __getitem__(self, i):
        with Image.open(self.records[i]["path"]) as im:
            image = self.transform(im.convert("RGB"))
        return image, self.tokens[i]


def _transforms(image_size: tuple[int, int], train: bool):
    """Persons and vehicles are squashed to the square pre-training size, as CLIP's 224 x 224 input; ReID later
    resizes the positional embedding to its non-square grid (official sec. 1.1)."""
    ops = [T.Resize(image_size, interpolation=T.InterpolationMode.BICUBIC)]
    if train:
        ops += [T.RandomHorizontalFlip(), T.RandomResizedCrop(image_size, scale=(0.8, 1.0), ratio=(0.9, 1.1))]
    # the ReID pipeline normalises with mean = std = 0.5 (official sec. 3.3), so the proxy CLIP sees the same
    return T.Compose(ops + [T.ToTensor(), T.Normalize([0.5] * 3, [0.5] * 3)])


def pretrain(data_root: str | Path, out: str | Path, arch: str = "mambapro-tiny", image_size=(32, 32),
             epochs: int = 5, batch_size: int = 64, lr: float = 1e-3, seed: int = 0, progress: bool = True) -> dict:
    """Train the proxy CLIP, save its open_clip state dict to ``out`` and return the zero-shot report.  One intra-op
    thread: with 2 threads on this project's machines the weights came out different (float reductions in another
    order), so the result would depend on the core count."""
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    np.random.seed(seed)
    image_size = tuple(image_size)
    model = open_clip.create_model(arch, pretrained=None, force_image_size=image_size)
    tokenizer = open_clip.get_tokenizer(arch)
    train_set = _CaptionDataset(read_caption_set(data_root, "train"), _transforms(image_size, True), tokenizer)
    g = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(train_set, batch_size=batch_size, shuffle=True, drop_last=True, generator=g)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.1)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * len(loader), pct_start=0.1)
    loss_fn = open_clip.loss.ClipLoss()
    history = []
    model.train()
    for _ in tqdm(range(epochs), desc="proxy CLIP", disable=not progress):
        total = 0.0
        for images, texts in loader:
            image_features, text_features, logit_scale = model(images, texts)[:3]
            loss = loss_fn(image_features, text_features, logit_scale)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
        history.append(total / len(loader))
    report = zero_shot_report(model, tokenizer, read_caption_set(data_root, "val"), image_size)
    report.update({"arch": arch, "image_size": list(image_size), "epochs": epochs, "train_images": len(train_set),
                   "loss_history": history})
    save_torch(model.state_dict(), out)
    return report


@torch.no_grad()
def zero_shot_report(model, tokenizer, records, image_size) -> dict:
    """Match each held-out image with the distinct held-out captions; report accuracies beside chance."""
    model.eval()
    captions = sorted({r["caption"] for r in records})
    text = F.normalize(model.encode_text(tokenizer(captions)), dim=-1)
    tf = _transforms(image_size, False)
    images = torch.stack([tf(Image.open(r["path"]).convert("RGB")) for r in records])
    image = F.normalize(torch.cat([model.encode_image(x) for x in images.split(128)]), dim=-1)
    pred = (image @ text.T).argmax(1).tolist()
    truth = [captions.index(r["caption"]) for r in records]
    by_caption = {c: next(r for r in records if r["caption"] == c) for c in captions}
    report = {
        "val_images": len(records),
        "distinct_captions": len(captions),
        "caption_accuracy": float(np.mean([p == t for p, t in zip(pred, truth)])),
        "caption_chance": _chance([r["caption"] for r in records]),
        "attributes": {},
    }
    for attr in records[0]["attributes"]:
        true_v = [r["attributes"][attr] for r in records]
        pred_v = [by_caption[captions[p]]["attributes"][attr] for p in pred]
        report["attributes"][attr] = {
            "accuracy": float(np.mean([a == b for a, b in zip(true_v, pred_v)])),
            "chance": _chance(true_v),
        }
    return report


def _chance(values) -> float:
    """Accuracy of the best constant guess (the majority value)."""
    _, counts = np.unique(np.asarray(values, dtype=object).astype(str), return_counts=True)
    return float(counts.max() / counts.sum())


def main(argv=None):
    p = argparse.ArgumentParser(description="Proxy-pretrain the tiny CLIP on the synthetic captioned images.")
    p.add_argument("--data", default="data/synthetic")
    p.add_argument("--out", default="build/proxy_clip.pt")
    p.add_argument("--report", default="results/default/pretrain/zeroshot.json")
    p.add_argument("--arch", default="mambapro-tiny")
    p.add_argument("--image-size", type=int, nargs=2, default=(32, 32))
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    report = pretrain(a.data, a.out, a.arch, a.image_size, a.epochs, a.batch_size, a.lr, a.seed)
    write_json(a.report, report)
    print(json.dumps({k: v for k, v in report.items() if k != "loss_history"}, indent=1))


if __name__ == "__main__":
    main()
