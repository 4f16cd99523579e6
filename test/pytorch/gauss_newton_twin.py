"""PyTorch twin of universal-sam's Gauss-Newton-type curvature products
(test/numerics/gauss-newton-twin.test.ts), each built from its definition
with torch.func on the same model, batch and vector (float64):

  ggn:              G v = Jᵀ (∇²_z L) J v   (jvp of the model, the loss's Hessian
                    in its outputs by jvp of its gradient, vjp of the model)
  empirical-fisher: F v = (1/n) Σ_n ∇ℓ_n (∇ℓ_n · v), the per-sample gradients
                    as the rows of jacrev of the vector of per-sample losses
                    ℓ_n (summed over the sample's outputs), n the number of
                    terms the loss averages (N, or N·d for the elementwise
                    losses with d outputs a sample)
  mc-fisher:        the same at each set of sampled targets ("targets"), with
                    the likelihood's loss (cross-entropy without label
                    smoothing), averaged over the sets

Reads on standard input a JSON list of cases in twin.py's format, each with
"kind" and, for mc-fisher, "targets": [{"shape", "data", "labels"}]; with
"full": true also the full GGN Jᵀ H_ℓ J from jacrev of the outputs and
torch.func.hessian of the loss in them. Writes a JSON list of
{"name", "product": [...], "full": [...] | None, "torch": version}.
"""
import json
import sys

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, hessian, jacrev, jvp, vjp

from twin import setup, tensor_of

torch.set_default_dtype(torch.float64)


def batch_loss(loss_spec, z, y):
    """The batch's mean loss in the outputs z, spelled out where torch.func's
    forward mode lacks a rule for the library function (twin.py says which)."""
    kind = loss_spec["type"]
    if kind == "mse":
        return ((z - y) ** 2).mean()
    if kind == "nll":
        return -z.gather(1, y.view(-1, 1)).mean()
    if kind == "bce-with-logits":
        return (torch.clamp(z, min=0) - z * y + torch.log1p(torch.exp(-z.abs()))).mean()
    if kind == "huber":
        d = loss_spec["delta"]
        r = (z - y).abs()
        return torch.where(r < d, 0.5 * r * r, d * (r - 0.5 * d)).mean()
    return F.cross_entropy(z, y, label_smoothing=loss_spec.get("labelSmoothing", 0.0))


def per_sample_losses(loss_spec, z, y, likelihood=False):
    """ℓ_n for every sample n, summed over its outputs, and the number of
    terms the batch's loss averages (the loss is Σ_n ℓ_n / terms); with
    `likelihood`, cross-entropy without label smoothing (the model's own)."""
    n = z.shape[0]
    kind = loss_spec["type"]
    if kind == "mse":
        return ((z - y) ** 2).reshape(n, -1).sum(1), z.numel()
    if kind == "nll":
        return -z.gather(1, y.view(-1, 1)).squeeze(1), n
    if kind == "bce-with-logits":
        return F.binary_cross_entropy_with_logits(z, y, reduction="none").reshape(n, -1).sum(1), z.numel()
    if kind == "huber":
        return F.huber_loss(z, y, reduction="none", delta=loss_spec["delta"]).reshape(n, -1).sum(1), z.numel()
    smoothing = 0.0 if likelihood else loss_spec.get("labelSmoothing", 0.0)
    return F.cross_entropy(z, y, reduction="none", label_smoothing=smoothing), n


def flat(d, names):
    return torch.cat([d[k].reshape(-1) for k in names])


def run(case):
    model, names, theta, v, x, y = setup(case)
    loss_spec = case["spec"]["loss"]
    kind = case["kind"]

    def f(params):
        return functional_call(model, params, (x,))

    if kind == "ggn":
        z, jv = jvp(f, (theta,), (v,))
        _, hjv = jvp(grad(lambda out: batch_loss(loss_spec, out, y)), (z.detach(),), (jv,))
        _, pullback = vjp(f, theta)
        product = flat(pullback(hjv)[0], names)
    else:
        sets = [y] if kind == "empirical-fisher" else [
            tensor_of(t, torch.int64 if t["labels"] else torch.float64) for t in case["targets"]]
        vflat = flat(v, names)
        product = torch.zeros_like(vflat)
        for target in sets:
            rows = jacrev(lambda p: per_sample_losses(loss_spec, f(p), target, kind == "mc-fisher")[0])(theta)
            g = torch.cat([rows[k].reshape(rows[k].shape[0], -1) for k in names], 1)  # [N, P]
            terms = per_sample_losses(loss_spec, f(theta), target)[1]
            product += g.T @ (g @ vflat) / terms
        product /= len(sets)
    full = None
    if case.get("full"):
        z = f(theta)
        jac = jacrev(f)(theta)
        J = torch.cat([jac[k].reshape(z.numel(), -1) for k in names], 1)  # [N·C, P]
        H = hessian(lambda out: batch_loss(loss_spec, out, y))(z.detach()).reshape(z.numel(), z.numel())
        full = (J.T @ H @ J).reshape(-1).tolist()
    return {"name": case["name"], "product": product.tolist(), "full": full, "torch": torch.__version__}


def main():
    cases = json.load(sys.stdin)
    json.dump([run(c) for c in cases], sys.stdout)


if __name__ == "__main__":
    main()
