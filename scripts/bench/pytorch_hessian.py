"""The PyTorch idiom for Hessian-vector products that PyHessian uses: the
gradient of the batch's loss is built once with create_graph=True, and each
H v is one torch.autograd.grad of that graph with grad_outputs=v and
retain_graph=True. Same LibTorch as ours (Debian's python3-torch), one thread.

usage: python3 pytorch_hessian.py MODEL DIR
DIR holds what hessian-runner.ts wrote: params.f32, x.f32, y.i32, v.f32 and
hv.f32 (ours), q.f64 (our vᵀHv). The ready line reports how far our H v
and vᵀHv are from PyTorch's. Then, one command a line:
  hvp K   -> a JSON list of K times (ms) of one H v
  quad K  -> K times of one vᵀHv as PyHessian's trace takes it (H v, then
             the sum of the per-parameter dot products)
  block B K -> K times of H applied to B vectors in one torch.autograd.grad call
             (is_grads_batched=True, vmap over the vectors), or {"error": ...}
  info    -> {"peakRssKb", "threads", "torch", "torchLibrary"}
"""
import json
import os
import sys

import torch
import torch.nn.functional as F

from pytorch_models import INPUTS, load_model, process_info, times_ms

model_name, folder = sys.argv[1], sys.argv[2]
torch.set_num_threads(1)
# LibTorch 2.x's fused attention kernels have no second derivative: the idiom
# needs the math attention on an attention model (ours takes it for such passes)
for switch in ("enable_flash_sdp", "enable_mem_efficient_sdp"):
    if hasattr(torch.backends.cuda, switch):
        getattr(torch.backends.cuda, switch)(False)


def load(name, dtype):
    with open(os.path.join(folder, name), "rb") as f:
        return torch.frombuffer(bytearray(f.read()), dtype=dtype)


model = load_model(model_name)
model.eval()
params = [p for p in model.parameters()]
flat = load("params.f32", torch.float32)
if flat.numel() != sum(p.numel() for p in params):
    sys.exit(f"params.f32 has {flat.numel()} values, the PyTorch model {sum(p.numel() for p in params)}")
with torch.no_grad():
    offset = 0
    for p in params:
        p.copy_(flat[offset:offset + p.numel()].view_as(p))
        offset += p.numel()
x = load("x.f32", torch.float32)
x = x.view(-1, *INPUTS[model_name])
y = load("y.i32", torch.int32).long()
v_flat = load("v.f32", torch.float32)
v, offset = [], 0
for p in params:
    v.append(v_flat[offset:offset + p.numel()].view_as(p))
    offset += p.numel()

loss = F.cross_entropy(model(x), y)
grads = torch.autograd.grad(loss, params, create_graph=True)


def hvp():
    return torch.autograd.grad(grads, params, grad_outputs=v, only_inputs=True, retain_graph=True)


def quad():
    return sum(torch.sum(h * vi) for h, vi in zip(hvp(), v)).item()


ours = load("hv.f32", torch.float32)
theirs = torch.cat([h.reshape(-1) for h in hvp()])
our_q = load("q.f64", torch.float64).item()
their_q = quad()
print(json.dumps({"ready": True, "maxAbsDiff": (ours - theirs).abs().max().item(),
                  "maxAbs": theirs.abs().max().item(), "q": their_q, "ourQ": our_q,
                  "quadRelDiff": abs(our_q - their_q) / abs(their_q)}), flush=True)


for line in sys.stdin:
    cmd = line.split()
    if not cmd:
        continue
    if cmd[0] == "hvp":
        print(json.dumps(times_ms(hvp, int(cmd[1]))), flush=True)
    elif cmd[0] == "quad":
        print(json.dumps(times_ms(quad, int(cmd[1]))), flush=True)
    elif cmd[0] == "block":
        b = int(cmd[1])
        vs = [torch.stack([vi * (1 + 0.01 * j) for j in range(b)]) for vi in v]

        def block():
            return torch.autograd.grad(grads, params, grad_outputs=vs, retain_graph=True, is_grads_batched=True)
        try:
            print(json.dumps(times_ms(block, int(cmd[2]))), flush=True)
        except Exception as e:  # vmap lacks a batching rule for some op of this model
            print(json.dumps({"error": str(e).splitlines()[0][:200]}), flush=True)
    elif cmd[0] == "info":
        print(json.dumps(process_info()), flush=True)
    else:
        break
