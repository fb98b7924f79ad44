"""Figures of images: each image shown whole and sharp, in colour or grey, none lost."""

import numpy as np
import torch
from PIL import Image

from cifarlab.report.image_figures import image_grid


def _solid(rgb: tuple[int, int, int]) -> torch.Tensor:
    return torch.tensor(rgb, dtype=torch.uint8).view(3, 1, 1).expand(3, 32, 32).clone()


def test_every_image_of_a_grid_is_drawn_whole(tmp_path):
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)] * 3  # 9 images: two rows of 8 columns
    images = torch.stack([_solid(c) for c in colours])
    captions = [f"image {k}\nline two" for k in range(9)]
    image_grid(images, captions, tmp_path / "grid.png", "nine images")
    pixels = np.asarray(Image.open(tmp_path / "grid.png").convert("RGB")).reshape(-1, 3)
    for colour in colours[:3]:
        exact = (pixels == colour).all(1).sum()
        # each image over 32 x 32 pixels: three of each colour, at least 3 x 32 x 32 pixels
        assert exact >= 3 * 32 * 32, (colour, exact)


def test_grey_images_and_an_empty_grid(tmp_path):
    grey = torch.full((2, 1, 28, 28), 200, dtype=torch.uint8)
    image_grid(grey, ["a", "b"], tmp_path / "grey.png", "two grey")
    pixels = np.asarray(Image.open(tmp_path / "grey.png").convert("L"))
    assert (pixels == 200).sum() >= 2 * 28 * 28
    image_grid(torch.zeros(0, 3, 32, 32, dtype=torch.uint8), [], tmp_path / "none.png", "none")
    assert Image.open(tmp_path / "none.png").size[0] > 0
