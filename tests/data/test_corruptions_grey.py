"""The corruptions on 1-channel images (MNIST, Fashion-MNIST, grey ImageFolders)."""

import pytest
import torch

from cifarlab.data.corruptions import CORRUPTIONS, corrupt
from cifarlab.errors import CifarlabError


@pytest.fixture(scope="module")
def grey() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8, generator=g)


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_grey_images_are_corrupted_as_their_rgb_and_stay_grey(grey, name):
    out = corrupt(grey, name, 3, seed=1)
    assert out.shape == grey.shape and out.dtype == torch.uint8
    rgb = corrupt(grey.expand(-1, 3, -1, -1).contiguous(), name, 3, seed=1)
    assert torch.equal(out, rgb[:, :1])
    assert not torch.equal(out, grey)  # corrupted, not passed through


def test_noise_keeps_its_strength_on_grey_images(grey):
    flat = torch.full((64, 1, 28, 28), 128, dtype=torch.uint8)
    spread = (corrupt(flat, "gaussian_noise", 5).float() - 128).std()
    # severity 5 is sigma 0.10 of the [0, 1] range: 25.5 grey levels (an average of three
    # channels would give 14.7)
    assert 23 < spread < 28


def test_other_channel_counts_are_refused_in_one_line():
    with pytest.raises(
        CifarlabError, match=r"C 3 \(colour\) or 1 \(grey\), not torch.uint8 \(2, 2, 8, 8\)"
    ):
        corrupt(torch.zeros(2, 2, 8, 8, dtype=torch.uint8), "fog", 1)
