"""Rebuild the ONet demo: MTCNN's face / landmark stage, pretrained, judged on real faces.

Weights: `facenet_pytorch/data/onet.pt` from the facenet-pytorch 2.6.0 wheel
(downloaded, unzipped; the package itself is not installed: it pins an old
torch). Data: scikit-image's `lfw_subset()`, 200 real 25x25 grey images, the
first 100 faces and the last 100 not, upsampled to ONet's 48x48 RGB input.
Half of each class calibrates, the other half evaluates with labels (1 = face),
judged on the `prob` output; both halves with their horizontal flips (200
samples each). With 100 evaluation samples a single sample is 1 %, the whole
INT8 loss budget: onnxruntime 1.32 moved one face's INT8 decision and the
verdict with it; 200 samples resolve 0.5 %.

    pip install -e '.[build-models]' && python models/onet/build.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch
from skimage.data import lfw_subset
from torch import nn

HERE = Path(__file__).resolve().parent
WHEEL = "facenet-pytorch==2.6.0"


class ONet(nn.Module):
    """facenet_pytorch.models.mtcnn.ONet, as published (weights loaded from its state dict)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1, self.pool1 = nn.Conv2d(3, 32, 3), nn.PReLU(32), nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2, self.pool2 = nn.Conv2d(32, 64, 3), nn.PReLU(64), nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3, self.pool3 = nn.Conv2d(64, 64, 3), nn.PReLU(64), nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.dense6_1, self.softmax6_1 = nn.Linear(256, 2), nn.Softmax(dim=1)
        self.dense6_2, self.dense6_3 = nn.Linear(256, 4), nn.Linear(256, 10)

    def forward(self, x: torch.Tensor):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x)).permute(0, 3, 2, 1).contiguous()
        x = self.prelu5(self.dense5(x.view(x.shape[0], -1)))
        return self.dense6_2(x), self.dense6_3(x), self.softmax6_1(self.dense6_1(x))


def pretrained_state() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", WHEEL, "-d", tmp], check=True)
        wheel = next(Path(tmp).glob("facenet_pytorch-*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            archive.extract("facenet_pytorch/data/onet.pt", tmp)
        return torch.load(Path(tmp) / "facenet_pytorch" / "data" / "onet.pt")


def onet_inputs(grey: np.ndarray) -> np.ndarray:
    """25x25 grey in [0, 1] -> ONet's 48x48 RGB, normalised as MTCNN does ((x - 127.5) / 128)."""
    images = torch.from_numpy(grey.astype(np.float32)).unsqueeze(1) * 255.0
    images = torch.nn.functional.interpolate(images, size=(48, 48), mode="bilinear").repeat(1, 3, 1, 1)
    return ((images - 127.5) * 0.0078125).numpy()


def main() -> None:
    model = ONet()
    model.load_state_dict(pretrained_state())
    model.eval()
    images = lfw_subset()  # 0-99 faces, 100-199 not
    labels = np.array([1] * 100 + [0] * 100)
    calibrate = np.r_[0:50, 100:150]
    evaluate = np.r_[50:100, 150:200]
    calibration = onet_inputs(images[calibrate])
    calibration = np.concatenate([calibration, calibration[..., ::-1]])  # horizontal flips: 200 real samples
    evaluation = onet_inputs(images[evaluate])
    evaluation = np.concatenate([evaluation, evaluation[..., ::-1]])  # likewise: 200
    expected = np.concatenate([labels[evaluate], labels[evaluate]])
    with torch.no_grad():
        prob = model(torch.from_numpy(evaluation))[2].numpy()
    print(f"FP32 face / non-face top-1 on held-out lfw_subset: {(prob.argmax(1) == expected).mean():.4f}")
    torch.onnx.export(model, torch.from_numpy(evaluation[:1]), HERE / "onet.onnx", input_names=["image"],
                      output_names=["boxes", "landmarks", "prob"],
                      dynamic_axes={n: {0: "batch"} for n in ("image", "boxes", "landmarks", "prob")},
                      opset_version=17, dynamo=False)
    np.savez_compressed(HERE / "onet.npz", calibration=np.ascontiguousarray(calibration),
                        evaluation=np.ascontiguousarray(evaluation), labels=expected, label_output=np.array("prob"))
    print(f"wrote {HERE / 'onet.onnx'} and {HERE / 'onet.npz'}")


if __name__ == "__main__":
    main()
