"""PyHessian on our models (test/numerics/pyhessian-twin.test.ts): for each
case in twin.py's format (eval mode, a cross-entropy loss), PyHessian's
hessian on the same model and batch (float64): its H v at our v (its
hessian_vector_product), and its top three eigenvalues and eigenvectors by
its power iteration with deflation (tol 1e-12, at most 20000 iterations
each). PYTHONPATH must hold a clone of amirgholami/PyHessian.
Writes a JSON list of {"name", "hv": [...], "eigenvalues": [...], "eigenvectors": [[...]], "commit"}.
"""
import json
import sys

import torch

import pyhessian.hessian  # noqa: F401 (the package's __init__ rebinds the name to the class)
from twin import setup

torch.set_default_dtype(torch.float64)
ph = sys.modules["pyhessian.hessian"]


def run(case):
    model, names, theta, v, x, y = setup(case)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(theta[name])
    order = [n for n, _ in model.named_parameters()]
    torch.manual_seed(0)
    h = ph.hessian(model, torch.nn.CrossEntropyLoss(label_smoothing=case["spec"]["loss"].get("labelSmoothing", 0.0)),
                   data=(x, y), cuda=False)
    hv = ph.hessian_vector_product(h.gradsH, h.params, [v[n] for n in order])
    by_name = dict(zip(order, hv))
    values, vectors = h.eigenvalues(maxIter=20000, tol=1e-12, top_n=3)
    flat = lambda parts: torch.cat([dict(zip(order, parts))[n].reshape(-1) for n in names]).tolist()
    return {"name": case["name"], "hv": torch.cat([by_name[n].reshape(-1) for n in names]).tolist(),
            "eigenvalues": values, "eigenvectors": [flat(vec) for vec in vectors]}


cases = json.load(sys.stdin)
json.dump([run(c) for c in cases], sys.stdout)
