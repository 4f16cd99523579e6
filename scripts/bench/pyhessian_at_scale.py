"""PyHessian's probes on a benchmark model (bench:scale, probes-at-scale.ts):
the same weights and batch as ours (DIR/params.f32, x.f32, y.i32), one probe
per process, so that its peak RSS is its own.

usage: python3 pyhessian_at_scale.py MODEL DIR eigen|density N THREADS
  eigen:   hessian.eigenvalues(maxIter=100, tol=1e-3, top_n=N) (power iteration with deflation)
  density: hessian.density(iter=N, n_v=1) (SLQ, one run, all N vectors kept)
PYTHONPATH must hold a clone of amirgholami/PyHessian. Prints one JSON line:
{"side": "pyhessian", "probe", "seconds" (from building PyHessian's hessian,
which runs the forward and the create_graph backward), "hvps" (calls of its
hessian_vector_product), "baselineRssMb", "peakRssMb" (VmHWM), ...}.
"""
import json
import os
import sys
import time

import torch

import pyhessian.hessian  # noqa: F401 (the package's __init__ rebinds the name to the class)
from pytorch_models import INPUTS, load_model

model_name, folder, probe, n, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
torch.set_num_threads(threads)
# LibTorch 2.x's fused attention has no second derivative (pytorch_hessian.py)
for switch in ("enable_flash_sdp", "enable_mem_efficient_sdp"):
    if hasattr(torch.backends.cuda, switch):
        getattr(torch.backends.cuda, switch)(False)


def memory():
    with open("/proc/self/status") as f:
        s = f.read()
    kb = lambda key: int(s.split(key + ":")[1].split()[0])
    return kb("VmRSS") / 1024, kb("VmHWM") / 1024


def load(name, dtype):
    with open(os.path.join(folder, name), "rb") as f:
        return torch.frombuffer(bytearray(f.read()), dtype=dtype)


model = load_model(model_name)
model.eval()
flat = load("params.f32", torch.float32)
with torch.no_grad():
    offset = 0
    for p in model.parameters():
        p.copy_(flat[offset:offset + p.numel()].view_as(p))
        offset += p.numel()
x = load("x.f32", torch.float32).view(-1, *INPUTS[model_name])
y = load("y.i32", torch.int32).long()
base, _ = memory()

ph = sys.modules["pyhessian.hessian"]
calls = [0]
hvp = ph.hessian_vector_product


def counted(*args, **kwargs):
    calls[0] += 1
    return hvp(*args, **kwargs)


ph.hessian_vector_product = counted
started = time.perf_counter()
h = ph.hessian(model, torch.nn.CrossEntropyLoss(), data=(x, y), cuda=False)
result = {}
if probe == "eigen":
    values, _ = h.eigenvalues(maxIter=100, tol=1e-3, top_n=n)
    result = {"values": [float(v) for v in values], "topN": n}
else:
    nodes, weights = h.density(iter=n, n_v=1)
    result = {"nodes": len(nodes[0]), "topNode": float(max(nodes[0]))}
seconds = time.perf_counter() - started
_, peak = memory()
print(json.dumps({"side": "pyhessian", "probe": probe, "seconds": seconds, "hvps": calls[0], "baselineRssMb": base,
                  "peakRssMb": peak, "torch": torch.__version__, **result}))
