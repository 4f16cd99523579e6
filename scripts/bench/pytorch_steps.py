"""PyTorch-Python twin of the benchmark: the same models and update rules
(math.md §2-5), written the idiomatic PyTorch way (per-parameter loops,
torch.optim.SGD), timed on the same LibTorch (Debian's python3-torch).

usage: python3 pytorch_steps.py MODEL OPTIMIZER THREADS [DEVICE [PRECISION [official]]]
With "official", the step is the paper's own code instead: the optimizer
classes SAM, ISAM and FROSAM of solver/sam.py in a clone of dbahri/universal_sam
whose path is in USAM_BENCH_OFFICIAL (imported from there, never copied),
called as its utils/engine.py's train_one_epoch calls them (fp32 only).
Then, on standard input, one command a line (the protocol of step-runner.ts):
  step K   -> a JSON list of K step times (ms)
  fb K     -> a JSON list of K forward-backward times (ms)
  info     -> {"peakRssKb", "threads", "torch", "torchLibrary"}
"""
import argparse
import json
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

from pytorch_models import INPUTS, load_model, process_info, times_ms

model_name, optimizer, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
device = torch.device(sys.argv[4] if len(sys.argv) > 4 else "cpu")
# 'bf16' / 'fp16': the forward under torch.autocast(bfloat16 / float16), the loss in
# float32 (ours: ModelOptions.precision); fp16 with the loss scaled by 2^16 and
# the gradients unscaled once per pass (ours: lossScale's default first scale)
precision = sys.argv[5] if len(sys.argv) > 5 else "fp32"
reduced = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
loss_scale = 2.0**16 if precision == "fp16" else 1.0
torch.set_num_threads(threads)
torch.manual_seed(0)


model = load_model(model_name).to(device)
params = [p for p in model.parameters()]
opt = torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=5e-4)
x = torch.randn(128, *INPUTS[model_name], device=device)
y = torch.randint(0, 10, (128,), device=device)
bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def set_stats(update):
    # the usual SAM-repository idiom: momentum 0 freezes the running statistics
    for m in bns:
        if update:
            m.momentum = m.backup_momentum
        else:
            m.backup_momentum = m.momentum
            m.momentum = 0


def loss_and_grad():
    opt.zero_grad(set_to_none=True)
    with torch.autocast(device.type, dtype=reduced or torch.bfloat16, enabled=reduced is not None):
        out = model(x)
    loss = F.cross_entropy(out.float(), y)
    (loss * loss_scale if loss_scale != 1.0 else loss).backward()
    if loss_scale != 1.0:
        for p in params:
            p.grad.div_(loss_scale)
    return loss.item()


def grads():
    return [p.grad.detach().clone() for p in params]


def sam_step(rho=0.05):
    loss_and_grad()
    norm = torch.norm(torch.stack([p.grad.norm() for p in params]))
    with torch.no_grad():
        es = [rho * p.grad / (norm + 1e-7) for p in params]
        for p, e in zip(params, es):
            p.add_(e)
    set_stats(False)
    loss_and_grad()
    set_stats(True)
    with torch.no_grad():
        for p, e in zip(params, es):
            p.sub_(e)
    opt.step()


def zeroth_order_step(kind, n, rho, lam, half_cube=0.05):
    loss0 = loss_and_grad()
    g0 = grads()
    w0 = [p.detach().clone() for p in params]
    set_stats(False)
    losses, gs = [], []
    for _ in range(n):
        with torch.no_grad():
            for p in params:
                u = torch.randn_like(p) if kind != "det" else torch.empty_like(p).uniform_(-half_cube, half_cube)
                p.add_(u, alpha=rho)
        losses.append(loss_and_grad())
        gs.append(grads())
        with torch.no_grad():
            for p, w in zip(params, w0):
                p.copy_(w)
    set_stats(True)
    with torch.no_grad():
        if kind == "frob":
            mean = sum(losses) / n
            c = lam / rho ** 2 / (n - 1)
            coef0, coefs = 1.0, [c * (l - mean) for l in losses]
        else:
            d = [(l - loss0) / rho ** 2 for l in losses]
            if kind == "trace":
                coefs = [lam / n for _ in d]
            else:  # det: psi = exp(-x/2), phi = m^-2
                import math
                m = sum(math.exp(-di / 2) for di in d) / n
                coefs = [lam * (-2 * m ** -3) * (-0.5 * math.exp(-di / 2)) / n for di in d]
            coef0 = 1 - sum(coefs)
        for k, p in enumerate(params):
            p.grad = coef0 * g0[k] + sum(c * g[k] for c, g in zip(coefs, gs))
    opt.step()


def official_step(repo):
    """The step of the paper's code: its engine's first forward-backward, then
    its optimizer class's step(loss, closure) with the benchmark's settings."""
    sys.path.insert(0, repo)
    from solver.sam import FROSAM, ISAM, SAM  # the clone's classes

    args = argparse.Namespace(rho=0.05, sam_variant="sam", asam_eta=0.0, isam_n_samples=1, isam_lam=1.0,
                              isam_rho=0.01, isam_setting="trace", isam_half_cube_len=1.0)
    if optimizer == "det-sam":
        args.isam_setting, args.isam_rho, args.isam_lam, args.isam_half_cube_len = "det", 1.0, 0.01, 0.05
    if optimizer == "frob-sam":
        args.isam_rho, args.isam_lam, args.isam_n_samples = 0.005, 0.001, 2
    cls = {"sgd": None, "sam": SAM, "trace-sam": ISAM, "det-sam": ISAM, "frob-sam": FROSAM}[optimizer]
    official = cls(params=params, base_optimizer=opt, args=args) if cls else opt

    def closure():
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        return loss

    def step():
        loss = F.cross_entropy(model(x), y)
        official.zero_grad()
        loss.backward()
        if cls:
            official.step(loss=loss, closure=closure)
        else:
            official.step()

    return step


if len(sys.argv) > 6 and sys.argv[6] == "official":
    if precision != "fp32":
        sys.exit("pytorch_steps.py: the official classes run in fp32 only")
    STEP = official_step(os.environ["USAM_BENCH_OFFICIAL"])
else:
    STEP = {
        "sgd": lambda: (loss_and_grad(), opt.step()),
        "sam": sam_step,
        "trace-sam": lambda: zeroth_order_step("trace", 1, 0.01, 1.0),
        "det-sam": lambda: zeroth_order_step("det", 1, 1.0, 0.01),
        "frob-sam": lambda: zeroth_order_step("frob", 2, 0.005, 0.001),
    }[optimizer]


for _ in range(2):  # warm-up
    STEP()
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    cmd = line.split()
    if not cmd:
        continue
    if cmd[0] == "step":
        print(json.dumps(times_ms(STEP, int(cmd[1]), device)), flush=True)
    elif cmd[0] == "fb":
        print(json.dumps(times_ms(loss_and_grad, int(cmd[1]), device)), flush=True)
    elif cmd[0] == "info":
        print(json.dumps(process_info()), flush=True)
    else:
        break
