"""Rebuild the stateful voice-activity demo: a small GRU run one 32 ms frame at a time, its state carried.

Audio: real speech synthesized offline by Debian's espeak-ng (several voices,
speeds and pitches; `apt-get install espeak-ng`), resampled to 16 kHz, with
pauses between utterances and background noise throughout at random levels. A
frame is labelled speech when the clean speech in it carries more than 1 % of its
utterance's peak frame energy. Three streams of different sentences: training,
calibration (640 frames, about 20 s) and evaluation (640 frames, with labels).

Model (torch, exported with explicit state and a scalar input, opset 17):
    audio [1, 512] float32   one frame
    sr    []       int64     the sample rate (features are scaled by 16000 / sr)
    h     [1, 1, 64] float32 the state, batch on axis 1 (a GRU's layout)
 -> speech [1, 1] (probability), hn [1, 1, 64] (the next state).
Features are a magnitude spectrum by fixed DFT matrices (MatMul), then Linear
layers and a GRU cell written with Linear layers, so dynamic INT8 has weights to
quantize. Judged by vad.farm.yaml: a stream (sequence: true), the state carried
from hn to h, speech decisions at 0.5 on the labels.

    pip install -e '.[build-models]' && python models/vad/build.py
"""

from __future__ import annotations

import subprocess
import tempfile
import time
import wave
from pathlib import Path

import numpy as np
import torch
from scipy.signal import resample_poly

HERE = Path(__file__).resolve().parent
RATE, FRAME, HIDDEN, SEED = 16000, 512, 64, 0
VOICES = ("en-us", "en-us+f3", "en-gb", "en-gb+f2", "en-us+m3", "en-gb-scotland")
SENTENCES = {
    "train": ["The driver kept both hands on the wheel.", "Traffic slowed near the tunnel entrance.",
              "Please check the mirrors before you change lanes.", "It started to rain just after midnight.",
              "The navigation system found a faster route.", "Turn left at the second set of lights.",
              "Her eyes stayed on the road for the whole trip.", "A warning sound played when he looked away.",
              "Fuel is low, the next station is ten miles ahead.", "We will arrive a little later than planned.",
              "The camera watches the face of whoever is driving.", "Take a break, you have been driving for hours."],
    "calibration": ["Seat belts must be fastened at all times.", "The bridge is closed for repairs tonight.",
                    "Keep a safe distance from the truck in front.", "The music was too loud to hear the siren."],
    "evaluation": ["A tired driver blinks more slowly than a rested one.", "The exit is two hundred metres ahead.",
                   "Headlights on, the fog is getting thicker.", "He answered the phone without looking down."],
}


def speak(text: str, voice: str, speed: int, pitch: int) -> np.ndarray:
    """espeak-ng's speech at 16 kHz, float in [-1, 1]."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "speech.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(path), text],
                       check=True)
        with wave.open(str(path)) as wav:
            rate, raw = wav.getframerate(), wav.readframes(wav.getnframes())
    samples = np.frombuffer(raw, dtype=np.int16).astype(np.float64) / 32768.0
    return resample_poly(samples, RATE, rate) if rate != RATE else samples


def stream(sentences: list[str], rng: np.random.Generator, repeat: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Frames [N, 512] of pauses and utterances over background noise, and a speech label per frame."""
    clean = []
    for _ in range(repeat):
        for text in sentences:
            voice = VOICES[int(rng.integers(len(VOICES)))]
            speech = speak(text, voice, int(rng.integers(120, 200)), int(rng.integers(30, 70)))
            speech *= rng.uniform(0.3, 1.0) / (np.abs(speech).max() or 1.0)
            pause = np.zeros(int(rng.uniform(0.3, 1.5) * RATE))
            clean += [pause, speech]
    clean = np.concatenate(clean)
    hiss = rng.normal(0, 1, len(clean))  # drawn before the levels, as the data always was
    noise = hiss * np.repeat(rng.uniform(0.002, 0.03, len(clean) // RATE + 1), RATE)[:len(clean)]
    count = len(clean) // FRAME
    frames = (clean + noise)[:count * FRAME].reshape(count, FRAME).astype(np.float32)
    energy = (clean[:count * FRAME].reshape(count, FRAME) ** 2).mean(1)
    return frames, (energy > 0.01 * energy.max()).astype(np.int64)


class VAD(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        n, k = np.arange(FRAME), np.arange(FRAME // 2 + 1)
        window = np.hanning(FRAME)[:, None]
        self.register_buffer("cos", torch.tensor(np.cos(2 * np.pi * np.outer(n, k) / FRAME) * window,
                                                 dtype=torch.float32))
        self.register_buffer("sin", torch.tensor(np.sin(2 * np.pi * np.outer(n, k) / FRAME) * window,
                                                 dtype=torch.float32))
        self.features = torch.nn.Linear(FRAME // 2 + 1, 32)
        self.gates_x = torch.nn.Linear(32, 3 * HIDDEN)
        self.gates_h = torch.nn.Linear(HIDDEN, 3 * HIDDEN)
        self.head = torch.nn.Linear(HIDDEN, 1)

    def forward(self, audio: torch.Tensor, sr: torch.Tensor, h: torch.Tensor):
        x = audio * (16000.0 / sr.to(torch.float32))
        power = (x @ self.cos) ** 2 + (x @ self.sin) ** 2
        feature = torch.relu(self.features(torch.log(power + 1e-6)))
        state = h[0]
        xr, xz, xn = self.gates_x(feature).chunk(3, dim=-1)
        hr, hz, hn = self.gates_h(state).chunk(3, dim=-1)
        reset, update = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
        state = (1 - update) * torch.tanh(xn + reset * hn) + update * state
        return torch.sigmoid(self.head(state)), state.unsqueeze(0)


def train(frames: np.ndarray, labels: np.ndarray, seconds: float = 90.0) -> VAD:
    """Truncated back-propagation through time over 64-frame windows of the training stream."""
    torch.manual_seed(SEED)
    model = VAD()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    x, y, sr = torch.from_numpy(frames), torch.from_numpy(labels).float(), torch.tensor(RATE)
    start, steps = time.monotonic(), 0
    while time.monotonic() - start < seconds and steps < 3000:
        begins = torch.randint(0, len(x) - 64, (16,))
        h = torch.zeros(1, 16, HIDDEN)
        loss = 0.0
        for t in range(64):
            prob, h = model(x[begins + t], sr, h)
            loss = loss + torch.nn.functional.binary_cross_entropy(prob[:, 0], y[begins + t])
        optimizer.zero_grad()
        (loss / 64).backward()
        optimizer.step()
        steps += 1
    print(f"trained {steps} steps in {time.monotonic() - start:.0f} s, last loss {loss.item() / 64:.4f}")
    return model.eval()


def accuracy(model: VAD, frames: np.ndarray, labels: np.ndarray) -> float:
    h, correct = torch.zeros(1, 1, HIDDEN), 0
    with torch.no_grad():
        for frame, label in zip(frames, labels):
            prob, h = model(torch.from_numpy(frame[None]), torch.tensor(RATE), h)
            correct += int((float(prob) > 0.5) == bool(label))
    return correct / len(labels)


def main() -> None:
    rng = np.random.default_rng(SEED)
    train_frames, train_labels = stream(SENTENCES["train"], rng, repeat=3)
    calibration, _ = stream(SENTENCES["calibration"], rng, repeat=2)
    evaluation, labels = stream(SENTENCES["evaluation"], rng, repeat=2)
    calibration, evaluation, labels = calibration[:640], evaluation[:640], labels[:640]
    print(f"frames: train {len(train_frames)} ({train_labels.mean():.0%} speech), evaluation {len(evaluation)} "
          f"({labels.mean():.0%} speech)")
    model = train(train_frames, train_labels)
    print(f"held-out frame accuracy, state carried: {accuracy(model, evaluation, labels):.4f}")
    example = (torch.from_numpy(evaluation[:1]), torch.tensor(RATE), torch.zeros(1, 1, HIDDEN))
    torch.onnx.export(model, example, HERE / "vad.onnx", input_names=["audio", "sr", "h"],
                      output_names=["speech", "hn"], opset_version=17, dynamo=False)
    np.savez_compressed(HERE / "vad.npz", calibration=calibration, evaluation=evaluation, labels=labels,
                        label_output=np.array("speech"))
    print(f"wrote {HERE / 'vad.onnx'} and {HERE / 'vad.npz'}")


if __name__ == "__main__":
    main()
