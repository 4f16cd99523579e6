"""datasets.MNIST over IDX files (MNIST or Fashion-MNIST, same format), as
torchvision's: (transform(image), int label) per index. `root` is the folder
holding train-images-idx3-ubyte(.gz) and its siblings; download is ignored."""
import gzip
import os

import numpy as np


def _read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def _find(root, stem):
    for name in (stem, stem + ".gz"):
        path = os.path.join(root, name)
        if os.path.exists(path):
            return path
    raise FileNotFoundError(f"{stem}(.gz) not found in {root}")


class MNIST:
    def __init__(self, root, train=True, transform=None, download=False):
        split = "train" if train else "t10k"
        self.data = _read_idx(_find(root, f"{split}-images-idx3-ubyte"))
        self.targets = _read_idx(_find(root, f"{split}-labels-idx1-ubyte")).astype(np.int64)
        self.transform = transform

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        x = self.data[i]
        if self.transform is not None:
            x = self.transform(x)
        return x, int(self.targets[i])
