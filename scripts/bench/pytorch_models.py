"""The benchmark models of scripts/bench/models.ts written as PyTorch modules
(the same layers in the same order, so named_parameters() lists the same
tensors as the Model's paramInfo()), and what the two PyTorch peers of the
benchmarks (pytorch_steps.py, pytorch_hessian.py) answer alike: timings and
the `info` line.

The "ts-" models are brought models: PyTorch modules that both sides run as
the same TorchScript file (ours through loadTorchScript). Written here from
their published definitions: the paper's MNIST model (six Linear layers, the
second applied twice, log-probabilities out), the CIFAR ResNet-20 shape of
PyHessian's models/resnet.py (16/32/64 channels, 3 basic blocks a stage),
and a pre-norm transformer block over 16 tokens of width 64.

usage (as a script): python3 pytorch_models.py trace DIR NAME...
  writes DIR/NAME.pt, torch.jit.trace of each ts- model (seed 0) on a batch of its input shape
"""
import os
import resource
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def torch_library():
    """The libtorch_cpu file this process mapped (which LibTorch runs the ops)."""
    with open("/proc/self/maps") as maps:
        for line in maps:
            if "libtorch_cpu.so" in line:
                return line.split()[-1]
    return ""


def times_ms(fn, k, device=None):
    """k wall-clock times (ms) of fn(); on CUDA each waits for the queued kernels."""
    out = []
    for _ in range(k):
        t = time.perf_counter()
        fn()
        if device is not None and device.type == "cuda":
            torch.cuda.synchronize()
        out.append((time.perf_counter() - t) * 1000)
    return out


def process_info():
    """The peer's `info` answer: peak RSS, threads, and which torch and LibTorch it runs."""
    return {"peakRssKb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "threads": torch.get_num_threads(),
            "torch": torch.__version__, "torchLibrary": torch_library()}


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        return F.relu(self.body(x) + self.shortcut(x))


def cifar_resnet(widths, blocks, classes=10):
    """A CIFAR ResNet of basic blocks: ResNet-18 (64..512, 2 a stage) and ResNet-20 (16..64, 3 a stage)."""
    layers, c = [nn.Conv2d(3, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU()], widths[0]
    for stage, width in enumerate(widths):
        for b in range(blocks):
            layers.append(BasicBlock(c, width, 2 if stage > 0 and b == 0 else 1))
            c = width
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, classes))


def resnet18(classes=10):
    return cifar_resnet([64, 128, 256, 512], 2, classes)


class OfficialMnist(nn.Module):
    """The paper's MNIST model (its models/build.py SimpleNet): fc2 is applied twice."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 128)
        self.fc2, self.fc3, self.fc4, self.fc5 = (nn.Linear(128, 128) for _ in range(4))
        self.fc6 = nn.Linear(128, 10)

    def forward(self, x):
        x = F.relu(self.fc1(torch.flatten(x, 1)))
        for fc in (self.fc2, self.fc2, self.fc3, self.fc4, self.fc5):
            x = F.relu(fc(x))
        return F.log_softmax(self.fc6(x), dim=1)


class TransformerBlock(nn.Module):
    """One pre-norm transformer encoder block over tokens [batch, 16, 64], mean-pooled into 10 classes."""

    def __init__(self, width=64, heads=4, hidden=256, classes=10):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attention = nn.MultiheadAttention(width, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width))
        self.head = nn.Linear(width, classes)

    def forward(self, x):
        h = self.norm1(x)
        x = x + self.attention(h, h, h, need_weights=False)[0]
        x = x + self.mlp(self.norm2(x))
        return self.head(x.mean(1))


class TransformerStack(nn.Module):
    """Six pre-norm blocks of width 384 (6 heads, MLP 1536) over 16 tokens: 10.7M parameters (the scale benchmark)."""

    def __init__(self, width=384, heads=6, hidden=1536, blocks=6, classes=10):
        super().__init__()
        self.blocks = nn.ModuleList(TransformerBlock(width, heads, hidden, classes) for _ in range(blocks))
        for b in self.blocks:
            del b.head  # one head, after the last block
        self.head = nn.Linear(width, classes)

    def forward(self, x):
        for b in self.blocks:
            h = b.norm1(x)
            x = x + b.attention(h, h, h, need_weights=False)[0]
            x = x + b.mlp(b.norm2(x))
        return self.head(x.mean(1))


# each model's input shape (one sample)
INPUTS = {"tiny": (1, 28, 28), "mlp": (1, 28, 28), "mlp256": (1, 28, 28), "cnn": (1, 28, 28), "resnet18": (3, 32, 32),
          "ts-mnist": (1, 28, 28), "ts-resnet20": (3, 32, 32), "ts-transformer": (16, 64), "ts-transformer-10m": (16, 384)}


def make_model(name):
    if name == "ts-mnist":
        return OfficialMnist()
    if name == "ts-resnet20":
        return cifar_resnet([16, 32, 64], 3)
    if name == "ts-transformer":
        return TransformerBlock()
    if name == "ts-transformer-10m":
        return TransformerStack()
    if name == "resnet18":
        return resnet18()
    if name == "tiny":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.Tanh(), nn.Linear(32, 10))
    if name == "mlp256":  # the MLP of the PyHessian comparison (issue 14)
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
                             nn.Linear(128, 10))
    if name == "mlp":
        layers = [nn.Flatten(), nn.Linear(784, 128), nn.ReLU()]
        for _ in range(4):
            layers += [nn.Linear(128, 128), nn.ReLU()]
        return nn.Sequential(*layers, nn.Linear(128, 10))
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10))


def load_model(name):
    """A benchmark model: a ts- model from the TorchScript file the benchmark wrote (USAM_BENCH_TS_DIR), else built here."""
    if name.startswith("ts-"):
        return torch.jit.load(os.path.join(os.environ["USAM_BENCH_TS_DIR"], name + ".pt"))
    return make_model(name)


if __name__ == "__main__" and sys.argv[1:2] == ["trace"]:
    for name in sys.argv[3:]:
        torch.manual_seed(0)
        module = make_model(name).train()
        traced = torch.jit.trace(module, torch.randn(8, *INPUTS[name]))
        traced.save(os.path.join(sys.argv[2], name + ".pt"))
