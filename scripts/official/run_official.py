"""Runs the paper's reference code (a clone of dbahri/universal_sam, given by
path; nothing of it is copied here) on the CPU: its own train.main with its
own argument parser, on the IDX files of a folder (Fashion-MNIST standing in
for MNIST), for scripts/official-mnist.ts.

  python run_official.py --repo CLONE --pyhessian CLONE --data DIR --out RESULT.json -- ARGS...
      ARGS are the reference's train.py flags (its README's MNIST command);
      writes per epoch: test top-1, train loss, and the mean and standard
      error of its 100 ‖Hv‖² Frobenius estimates.
  python run_official.py --repo CLONE --export-init MODEL.pt -- ARGS...
      the model train.main would start from (its seed, its build_model),
      as TorchScript, for this library to start from the same weights.

What is changed, and only at run time: torchvision is the stand-in in
shim/ (MNIST and three transforms over IDX files; the wheel here does not
load); CUDA calls are mapped to the CPU (Module.cuda, Tensor.cuda, and the
Hessian helper's cuda=True); one intra-op thread unless OMP_NUM_THREADS says
otherwise; the data loaders' worker processes are the caller's choice
(--num_workers 0 keeps the run in one process).
"""
import argparse
import json
import os
import sys
import tempfile

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "shim"))

import torch  # noqa: E402

torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
torch.nn.Module.cuda = lambda self, *a, **k: self
torch.Tensor.cuda = lambda self, *a, **k: self
torch.cuda.set_device = lambda *a, **k: None


def main():
    ours = argparse.ArgumentParser()
    ours.add_argument("--repo", required=True)
    ours.add_argument("--data")
    ours.add_argument("--out")
    ours.add_argument("--export-init")
    ours.add_argument("--pyhessian", help="a clone of amirgholami/PyHessian (the reference's Hessian helper imports pyhessian.utils)")
    mine, rest = ours.parse_known_args()
    rest = [a for a in rest if a != "--"]
    sys.path.insert(1, os.path.abspath(mine.repo))
    if mine.pyhessian:
        # only its package: the clone's top-level utils.py would shadow the reference's utils/ (a namespace package)
        only = tempfile.mkdtemp(prefix="usam-pyhessian-")
        os.symlink(os.path.join(os.path.abspath(mine.pyhessian), "pyhessian"), os.path.join(only, "pyhessian"))
        sys.path.insert(2, only)
    os.chdir(tempfile.mkdtemp(prefix="usam-official-"))  # its logs go here

    from configs.defaulf_cfg import default_parser  # the reference's own parser

    sys.argv = ["train.py", *rest, "--datadir", mine.data or ".", "--device", "cpu"]
    args = default_parser().get_args()

    if mine.export_init:
        from models.build import build_model
        from utils.seed import setup_seed

        setup_seed(args)
        args.n_classes = 10  # what train.main reads off MNIST_base (building the data draws no random numbers)
        model = build_model(args).eval()
        torch.jit.script(model).save(mine.export_init)
        return

    import custom_hessian
    import train

    base = custom_hessian.hessian

    class OnCpu(base):
        def __init__(self, *a, cuda=True, **k):
            super().__init__(*a, cuda=False, **k)

    custom_hessian.hessian = OnCpu
    args.save_dir = os.getcwd()
    out = train.main(args)
    frob = out.get("hessian_data", {}).get("frobenius", [])
    epochs = []
    for i, (t, v) in enumerate(zip(out["train_stats"], out["val_stats"])):
        row = {"epoch": i + 1, "top1": v["test_acc1"] / 100, "testLoss": v["test_loss"], "trainLoss": t["train_loss"]}
        if i < len(frob):
            f = [float(x) for x in frob[i]]
            mean = sum(f) / len(f)
            var = sum((x - mean) ** 2 for x in f) / (len(f) - 1)
            row.update({"frobeniusSquared": mean, "frobeniusStandardError": (var / len(f)) ** 0.5})
        epochs.append(row)
    with open(mine.out, "w") as f:
        json.dump({"torch": torch.__version__, "epochs": epochs}, f)


if __name__ == "__main__":
    main()
