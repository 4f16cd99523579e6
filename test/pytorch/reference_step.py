"""PyTorch twin of the paper's reference training step (dbahri/universal_sam:
utils/engine.py's train_one_epoch with solver/sam.py's SAM, ISAM and FROSAM),
written from its algorithm for test/numerics/batchnorm-reference.test.ts, float64.

As in the reference, the model is in train mode for every pass: the
unperturbed forward-backward, then each perturbed closure, so BatchNorm's
running statistics move at every pass ("every-pass"). With "once", the
running statistics (and num_batches_tracked) are saved before the perturbed
closures and put back after them: only the unperturbed pass moves them.

Reads on standard input a JSON list of cases, each
  {"spec", "params": [{"name", "shape", "data"}], "buffers": [...],
   "x": {"shape", "data"}, "y": {"shape", "data"},
   "rule": {"kind": "sam"|"asam"|"trace-sam"|"det-sam"|"frob-sam", "rho", "lambda", "eta"},
   "base": {"lr", "momentum", "weightDecay"}, "steps": [{"directions": [[flat P]...]}],
   "batchNorm": "once"|"every-pass"}
and writes a list of {"params": [flat], "buffers": {name: [flat]}}, the state
after each case's steps.
The directions are flat vectors in the order of "params" (our flat layout),
split per parameter as the reference's per-parameter draws.
"""
import json
import math
import sys

import torch
import torch.nn.functional as F

from twin import build, tensor_of

torch.set_default_dtype(torch.float64)


def run(case):
    model = build(case["spec"]["layers"], False)  # running statistics tracked
    model.train(True)
    names = [p["name"] for p in case["params"]]
    own = dict(model.named_parameters())
    with torch.no_grad():
        for p in case["params"]:
            own[p["name"]].copy_(tensor_of(p))
        for name, buf in model.named_buffers():
            mine = next(b for b in case["buffers"] if b["name"] == name)
            buf.copy_(tensor_of(mine, buf.dtype))
    params = [own[n] for n in names]
    x = tensor_of(case["x"])
    y = tensor_of(case["y"], torch.int64)
    rule = case["rule"]
    b = case["base"]
    opt = torch.optim.SGD(params, lr=b["lr"], momentum=b["momentum"], weight_decay=b["weightDecay"])
    every_pass = case["batchNorm"] == "every-pass"

    def closure():
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        return loss

    def split(flat):
        out, k = [], 0
        for p in params:
            out.append(torch.tensor(flat[k:k + p.numel()]).reshape(p.shape))
            k += p.numel()
        return out

    def perturbed(e):
        """L and ∇L at w + e, in train mode; with "once" the statistics are put back."""
        saved = None if every_pass else [buf.clone() for buf in model.buffers()]
        with torch.no_grad():
            for p, ei in zip(params, e):
                p.add_(ei)
        opt.zero_grad()
        loss = closure().item()
        grads = [p.grad.clone() for p in params]
        with torch.no_grad():
            for p, ei in zip(params, e):
                p.sub_(ei)
        if saved is not None:
            with torch.no_grad():
                for buf, s in zip(model.buffers(), saved):
                    buf.copy_(s)
        return loss, grads

    for step in case["steps"]:
        # the training loop's unperturbed pass (train mode: moves the statistics)
        opt.zero_grad()
        loss = closure().item()
        g0 = [p.grad.clone() for p in params]
        rho = rule["rho"]
        if rule["kind"] in ("sam", "asam"):
            if rule["kind"] == "asam":
                t = [rule["eta"] + p.detach().abs() for p in params]
                norm = math.sqrt(sum(((ti * g) ** 2).sum().item() for ti, g in zip(t, g0)))
                e = [rho / (norm + 1e-7) * ti * ti * g for ti, g in zip(t, g0)]
            else:
                norm = math.sqrt(sum((g ** 2).sum().item() for g in g0))
                e = [rho / (norm + 1e-7) * g for g in g0]
            _, grad = perturbed(e)
        elif rule["kind"] in ("trace-sam", "det-sam"):
            # ISAM: psi, psi' and phi' of the setting; g_sum of psi'(d_i)/n·(g_i − g0)
            if rule["kind"] == "trace-sam":
                psi, dpsi, dphi = (lambda d: d), (lambda d: 1.0), (lambda m: 1.0)
            else:
                psi, dpsi, dphi = (lambda d: math.exp(-d / 2)), (lambda d: -0.5 * math.exp(-d / 2)), (lambda m: -2 / m ** 3)
            n = len(step["directions"])
            cum, g_sum = 0.0, [torch.zeros_like(g) for g in g0]
            for u in step["directions"]:
                li, gi = perturbed([rho * ui for ui in split(u)])
                d = (li - loss) / rho ** 2
                cum += psi(d) / n
                for s, a, b0 in zip(g_sum, gi, g0):
                    s.add_(dpsi(d) / n * (a - b0))
            grad = [b0 + rule["lambda"] * dphi(cum) * s for b0, s in zip(g0, g_sum)]
        elif rule["kind"] == "frob-sam":
            # FROSAM: g0 + lam/rho²·(1/(n−1))·(Σ L_i g_i − (Σ L_i)·(1/n)·Σ g_i)
            n = len(step["directions"])
            loss_sum, cross, gsum = 0.0, [torch.zeros_like(g) for g in g0], [torch.zeros_like(g) for g in g0]
            for u in step["directions"]:
                li, gi = perturbed([rho * ui for ui in split(u)])
                loss_sum += li
                for c, s, a in zip(cross, gsum, gi):
                    c.add_(li * a)
                    s.add_(a)
            k = rule["lambda"] / rho ** 2
            grad = [b0 + k * (c / (n - 1) - loss_sum / (n - 1) / n * s) for b0, c, s in zip(g0, cross, gsum)]
        else:
            raise ValueError(f"rule {rule['kind']} has no reference step here")
        for p, g in zip(params, grad):
            p.grad = g
        opt.step()

    return {
        "params": torch.cat([p.detach().reshape(-1) for p in params]).tolist(),
        "buffers": {name: buf.double().reshape(-1).tolist() for name, buf in model.named_buffers()},
    }


def main():
    json.dump([run(c) for c in json.load(sys.stdin)], sys.stdout)


if __name__ == "__main__":
    main()
