"""ToTensor, Normalize and Compose as torchvision computes them for a
greyscale uint8 image: float32 in [0, 1], shape [1, H, W], then (x − m)/s."""
import torch


class Compose:
    def __init__(self, transforms):
        self.transforms = transforms

    def __call__(self, x):
        for t in self.transforms:
            x = t(x)
        return x


class ToTensor:
    def __call__(self, image):
        return torch.as_tensor(image, dtype=torch.uint8).unsqueeze(0).to(torch.float32).div(255)


class Normalize:
    def __init__(self, mean, std):
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)

    def __call__(self, x):
        return (x - self.mean) / self.std
