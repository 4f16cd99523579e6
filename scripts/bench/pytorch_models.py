"""The benchmark models of scripts/bench/models.ts written as PyTorch modules
(the same layers in the same order, so named_parameters() lists the same
tensors as the Model's paramInfo()), and what the two PyTorch peers of the
benchmarks (pytorch_steps.py, pytorch_hessian.py) answer alike: timings and
the `info` line."""
import resource
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


def resnet18(classes=10):
    layers, c = [nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU()], 64
    for stage, width in enumerate([64, 128, 256, 512]):
        layers += [BasicBlock(c, width, 1 if stage == 0 else 2), BasicBlock(width, width, 1)]
        c = width
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, classes))


def make_model(name):
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
