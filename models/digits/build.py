"""Rebuild the digits demo model from scikit-learn's bundled `load_digits` set.

A small CNN with an MLP head, trained on 1,347 real 8x8 handwritten digits
upsampled to 32x32; 450 digits are held out for evaluation. Its balance of
convolution work (which static INT8 speeds up) and matrix work in the head
(all that dynamic INT8 quantizes: MatMul/Gemm) lets both INT8 variants pay at
one and two threads: with a thin head dynamic INT8 was no faster than FP32,
with thin convolutions static INT8 was 0.7-1.1x at two threads. Writes digits.onnx (opset 17) and
digits.npz (calibration, evaluation, labels).

    pip install -e '.[build-models]' && python models/digits/build.py
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

HERE = Path(__file__).resolve().parent
SIDE = 32
SEED = 0


class DigitsNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        c = torch.nn.Conv2d
        self.features = torch.nn.Sequential(
            c(1, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            c(32, 64, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            c(64, 128, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        )
        self.head = torch.nn.Sequential(
            torch.nn.Flatten(), torch.nn.Linear(128 * 4 * 4, 1024), torch.nn.ReLU(),
            torch.nn.Linear(1024, 512), torch.nn.ReLU(), torch.nn.Linear(512, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def load_images() -> tuple[np.ndarray, np.ndarray]:
    """The real digits, scaled to [0, 1] and upsampled to SIDE x SIDE."""
    digits = load_digits()
    images = torch.from_numpy(digits.images.astype(np.float32) / 16.0).unsqueeze(1)
    images = torch.nn.functional.interpolate(images, size=(SIDE, SIDE), mode="bilinear")
    return images.numpy(), digits.target.astype(np.int64)


def train(x: np.ndarray, y: np.ndarray, seconds: float = 60.0) -> DigitsNet:
    torch.manual_seed(SEED)
    model = DigitsNet()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    start = time.monotonic()
    epoch = 0
    while time.monotonic() - start < seconds and epoch < 40:
        perm = torch.randperm(len(xt))
        for i in range(0, len(xt), 64):
            idx = perm[i:i + 64]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
        epoch += 1
    print(f"trained {epoch} epochs in {time.monotonic() - start:.0f} s, last loss {loss.item():.4f}")
    return model.eval()


def main() -> None:
    x, y = load_images()
    x_train, x_eval, y_train, y_eval = train_test_split(
        x, y, test_size=450, random_state=SEED, stratify=y)
    model = train(x_train, y_train)
    with torch.no_grad():
        acc = (model(torch.from_numpy(x_eval)).argmax(1).numpy() == y_eval).mean()
    print(f"held-out top-1 {acc:.4f}")
    torch.onnx.export(model, torch.from_numpy(x_eval[:1]), HERE / "digits.onnx",
                      input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
                      opset_version=17, dynamo=False)
    # Calibration draws from the training split only: never from what is evaluated.
    np.savez_compressed(HERE / "digits.npz", calibration=x_train[:300], evaluation=x_eval,
                        labels=y_eval)
    print(f"wrote {HERE / 'digits.onnx'} and {HERE / 'digits.npz'}")


if __name__ == "__main__":
    main()
