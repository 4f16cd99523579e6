"""PyTorch twin of universal-sam models, for cross-checking Hessian-vector
products against PyTorch's own autograd (test/numerics/pytorch-twin.test.ts).

Reads on standard input a JSON list of cases, each
  {"name", "spec": {input, layers, loss} (parsed, defaults filled in),
   "training": bool, "x": {"shape", "data"}, "y": {"shape", "data", "labels": bool},
   "params": [{"name", "shape", "data"}], "buffers": [{"name", "shape", "data"}],
   "v": [{"name", "data"}]}
builds the same model with torch.nn (parameters and BatchNorm statistics
loaded by their state_dict names), and writes a JSON list of
  {"name", "loss", "grad": [...], "doubleBackward": [...], "forwardOverReverse": [...] | null,
   "forwardOverReverseError": str | null, "torch": version}
with the gradient and H·v flattened in the order of "params": H·v by double backward
(torch.autograd.grad of <grad, v>), and by forward-mode AD through the
backward pass (torch.func.jvp of torch.func.grad), where PyTorch supports it.
"""
import json
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call, grad, jvp

torch.set_default_dtype(torch.float64)


class Residual(nn.Module):
    def __init__(self, body, shortcut):
        super().__init__()
        self.body = body
        self.shortcut = shortcut  # an empty Sequential is the identity

    def forward(self, x):
        return self.body(x) + self.shortcut(x)


def build(layers, training):
    mods = []
    for l in layers:
        t = l["type"]
        if t == "linear":
            mods.append(nn.Linear(l["inFeatures"], l["outFeatures"], bias=l["bias"]))
        elif t == "conv2d":
            mods.append(nn.Conv2d(l["inChannels"], l["outChannels"], tuple(l["kernelSize"]), tuple(l["stride"]),
                                  tuple(l["padding"]), dilation=tuple(l.get("dilation", (1, 1))),
                                  groups=l.get("groups", 1), bias=l["bias"]))
        elif t in ("batchnorm1d", "batchnorm2d"):
            cls = nn.BatchNorm1d if t == "batchnorm1d" else nn.BatchNorm2d
            # in training mode the batch statistics normalise and the running
            # ones are not read: leave them out (functorch cannot update them in place)
            mods.append(cls(l["numFeatures"], eps=l["eps"], momentum=l["momentum"], affine=l["affine"],
                            track_running_stats=not training))
        elif t == "embedding":
            mods.append(nn.Embedding(l["numEmbeddings"], l["embeddingDim"]))
        elif t == "layernorm":
            mods.append(nn.LayerNorm(l["normalizedShape"], eps=l["eps"], elementwise_affine=l["elementwiseAffine"]))
        elif t == "relu":
            mods.append(nn.ReLU())
        elif t == "tanh":
            mods.append(nn.Tanh())
        elif t == "flatten":
            mods.append(nn.Flatten())
        elif t == "gelu":
            mods.append(nn.GELU(approximate=l["approximate"]))
        elif t == "silu":
            mods.append(nn.SiLU())
        elif t == "sigmoid":
            mods.append(nn.Sigmoid())
        elif t == "leakyrelu":
            mods.append(nn.LeakyReLU(l["negativeSlope"]))
        elif t == "identity":
            mods.append(nn.Identity())
        elif t == "softplus":
            mods.append(nn.Softplus(beta=l["beta"], threshold=l["threshold"]))
        elif t == "maxpool2d":
            mods.append(nn.MaxPool2d(tuple(l["kernelSize"]), tuple(l["stride"]), tuple(l["padding"])))
        elif t == "avgpool2d":
            mods.append(nn.AvgPool2d(tuple(l["kernelSize"]), tuple(l["stride"]), tuple(l["padding"])))
        elif t == "adaptiveavgpool2d":
            mods.append(nn.AdaptiveAvgPool2d(tuple(l["outputSize"])))
        elif t == "dropout":
            mods.append(nn.Dropout(l["p"]))
        elif t == "dropout2d":
            mods.append(nn.Dropout2d(l["p"]))
        elif t == "residual":
            mods.append(Residual(build(l["body"], training), build(l.get("shortcut", []), training)))
        else:
            raise ValueError(f"layer type {t} has no PyTorch twin here")
    return nn.Sequential(*mods)


def tensor_of(entry, dtype=torch.float64):
    return torch.tensor(entry["data"], dtype=dtype).reshape(entry["shape"])


def setup(case):
    """The case's model (its parameters and buffers loaded), parameter names
    in our order, the parameters and v as dicts, and the batch."""
    spec = case["spec"]
    training = case["training"]
    model = build(spec["layers"], training)
    model.train(training)
    names = [p["name"] for p in case["params"]]
    own = dict(model.named_parameters())
    if sorted(own) != sorted(names):
        raise ValueError(f"parameter names differ: ours {names}, PyTorch's {sorted(own)}")
    theta = {p["name"]: tensor_of(p) for p in case["params"]}
    with torch.no_grad():
        for name, buf in model.named_buffers():
            if name.endswith("num_batches_tracked"):
                continue
            mine = next(b for b in case["buffers"] if b["name"] == name)
            buf.copy_(tensor_of(mine))
    v = {e["name"]: tensor_of({"data": e["data"], "shape": list(theta[e["name"]].shape)}) for e in case["v"]}
    x = tensor_of(case["x"], torch.int64 if spec["layers"][0]["type"] == "embedding" else torch.float64)
    y = tensor_of(case["y"], torch.int64 if case["y"]["labels"] else torch.float64)
    return model, names, theta, v, x, y


def run(case):
    spec = case["spec"]
    model, names, theta, v, x, y = setup(case)
    loss_spec = spec["loss"]

    def loss_fn(params, forward_mode=False):
        out = functional_call(model, params, (x,))
        kind = loss_spec["type"]
        if kind == "mse":
            # F.mse_loss's value, spelled out: under torch.func.jvp(grad(...)),
            # F.mse_loss's backward writes into the target's zero tangent and
            # fails ("ZeroTensors are immutable", PyTorch 2.13)
            return ((out - y) ** 2).mean()
        if kind == "nll":
            return nn.NLLLoss()(out, y)
        if kind == "bce-with-logits":
            return nn.BCEWithLogitsLoss()(out, y)
        if kind == "huber":
            delta = loss_spec["delta"]
            if forward_mode:
                # huber_loss_backward has no forward-mode rule (PyTorch 2.13):
                # nn.HuberLoss's value spelled out for torch.func.jvp(grad(...))
                r = (out - y).abs()
                return torch.where(r < delta, 0.5 * r * r, delta * (r - 0.5 * delta)).mean()
            return nn.HuberLoss(delta=delta)(out, y)
        return F.cross_entropy(out, y, label_smoothing=loss_spec.get("labelSmoothing", 0.0))

    leaves = {k: t.clone().requires_grad_(True) for k, t in theta.items()}
    loss = loss_fn(leaves)
    g = torch.autograd.grad(loss, [leaves[n] for n in names], create_graph=True)
    dot = sum((gi * v[n]).sum() for gi, n in zip(g, names))
    hv_db = torch.autograd.grad(dot, [leaves[n] for n in names])
    result = {"name": case["name"], "loss": loss.item(), "torch": torch.__version__,
              "grad": torch.cat([gi.detach().reshape(-1) for gi in g]).tolist(),
              "doubleBackward": torch.cat([h.reshape(-1) for h in hv_db]).tolist(),
              "forwardOverReverse": None, "forwardOverReverseError": None}
    try:
        _, hv_fr = jvp(grad(lambda p: loss_fn(p, forward_mode=True)), (theta,), (v,))
        result["forwardOverReverse"] = torch.cat([hv_fr[n].reshape(-1) for n in names]).tolist()
    except Exception as e:  # an op without a forward-mode rule for its backward
        result["forwardOverReverseError"] = f"{type(e).__name__}: {str(e).splitlines()[0]}"
    return result


def main():
    cases = json.load(sys.stdin)
    json.dump([run(c) for c in cases], sys.stdout)


if __name__ == "__main__":
    main()
