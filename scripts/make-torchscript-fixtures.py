"""Writes the TorchScript test fixtures (test/fixtures/torchscript/) with the
PyTorch it runs on (Debian's python3-torch 1.13 for the committed ones): small
modules saved by torch.jit.save, scripted and traced, and reference.json with
their float64 losses and Hessian-vector products by PyTorch's own double
backward, so the tests run without Python.

usage: python3 scripts/make-torchscript-fixtures.py [OUT_DIR]
"""
import json
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "test", "fixtures", "torchscript")
os.makedirs(out, exist_ok=True)
torch.manual_seed(0)


def mlp():
    return nn.Sequential(nn.Flatten(), nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 8), nn.Softplus(), nn.Linear(8, 3))


def cnn_bn():
    return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(75, 3))


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 3)

    def forward(self, x, mask):
        return self.fc(x * mask)


class Pair(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 3)

    def forward(self, x):
        return self.fc(x), x


def reference(module, x, y, v, training):
    m = module.double()
    m.train(training)
    params = list(m.parameters())
    loss = F.cross_entropy(m(x), y)
    grads = torch.autograd.grad(loss, params, create_graph=True)
    hv = torch.autograd.grad(grads, params, grad_outputs=v)
    return {"loss": loss.item(), "hv": torch.cat([h.reshape(-1) for h in hv]).tolist()}


cases = {}
for name, make, shape in [("mlp", mlp, (7, 6)), ("cnn-bn", cnn_bn, (4, 1, 5, 5))]:
    module = make()
    if name == "cnn-bn":  # running statistics away from 0 and 1
        module.train()
        with torch.no_grad():
            module(torch.randn(8, 1, 5, 5) * 2 + 1)
        module.eval()
    x = torch.randn(*shape)
    y = torch.randint(0, 3, (shape[0],))
    v = [torch.randn_like(p) for p in module.parameters()]
    files = {"scripted": torch.jit.script(module)}
    if name == "mlp":  # tracing bakes the train/eval flag of BatchNorm in: only the MLP is traced
        files["traced"] = torch.jit.trace(module, x)
    for kind, m in files.items():
        torch.jit.save(m, os.path.join(out, f"{name}-{kind}.pt"))
    ref = {
        "x": {"shape": list(x.shape), "data": x.double().reshape(-1).tolist()},
        "y": y.tolist(),
        "v": torch.cat([t.reshape(-1) for t in v]).double().tolist(),
        "names": [n for n, _ in module.named_parameters()],
        "buffers": [n for n, _ in module.named_buffers()],
    }
    for training in (False, True):
        copy = make()
        copy.load_state_dict(module.state_dict())
        ref["train" if training else "eval"] = reference(copy, x.double(), y, [t.double() for t in v], training)
    cases[name] = ref

# for the Trainer's tests: images [N, 1, 28, 28] (the synthetic data set) to 10 classes
torch.jit.save(torch.jit.script(nn.Sequential(nn.Flatten(), nn.Linear(784, 16), nn.Tanh(), nn.Linear(16, 10))),
               os.path.join(out, "mlp-784-scripted.pt"))
torch.jit.save(torch.jit.script(nn.ReLU()), os.path.join(out, "no-parameters.pt"))
torch.jit.save(torch.jit.script(Pair()), os.path.join(out, "tuple-output.pt"))
torch.jit.save(torch.jit.script(TwoInputs()), os.path.join(out, "two-inputs.pt"))
with open(os.path.join(out, "reference.json"), "w") as f:
    json.dump({"torch": torch.__version__, "cases": cases}, f)
print(f"wrote {sorted(os.listdir(out))} with torch {torch.__version__}")
