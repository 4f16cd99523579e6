"""A stand-in for torchvision with only what the reference code's MNIST_base
reads (datasets.MNIST, transforms.Compose/ToTensor/Normalize), over the IDX
files of a folder: torchvision's wheel here does not match torch 2.13 (its
compiled ops fail to register), and the reference needs none of them for
MNIST. scripts/official/run_official.py puts this folder first on sys.path."""
from . import datasets, transforms  # noqa: F401
