"""The 15 generated CIFAR-10-C corruptions: shapes, determinism, severity order, parsing of
the names and severities, and the cache of corrupted images."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cifarlab.data import corruptions
from cifarlab.data.corruptions import (
    CORRUPTIONS,
    FAMILIES,
    corrupt,
    corrupted,
    parse_corruptions,
    parse_severities,
)
from cifarlab.errors import CifarlabError

# Not ordered severity by severity in the mean absolute change from the clean images, with
# the original parameters; for these the test asks only that severity 5 changes more than 1:
# - glass_blur: severity 3 blurs more (sigma 0.4) than 4 (0.25, but two shuffles) and 5
#   shuffles as often as 4, so 2 -> 3 and 4 -> 5 need not grow.
# - frost: c0 * image + c1 * frost with c1 0.4 at severities 3 and 4 and 0.45 at 5 while
#   c0 falls 0.9 -> 0.85 -> 0.75: taking away more of the image offsets part of a frost
#   layer brighter than it, so the change can shrink from 3 on (the frost photographs are as
#   bright); and each severity draws its own frost layers, of varying brightness.
ONLY_ENDS = {"glass_blur", "frost"}
# - elastic_transform: severity 1 has the largest affine warp (corners moved up to 2.56 px,
#   no elastic field), severity 5 the smallest (0.96 px) plus a small field: the pixel change
#   is not ordered by severity at all, so only "every severity changes the images" is asked.
UNORDERED = {"elastic_transform"}


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    """4 images 32x32 with some structure: smooth colour patches plus a little noise."""
    g = torch.Generator().manual_seed(0)
    small = torch.randint(0, 256, (4, 3, 8, 8), generator=g).float()
    big = torch.nn.functional.interpolate(small, size=32, mode="bilinear", align_corners=False)
    return (big + 10 * torch.randn(big.shape, generator=g)).clamp(0, 255).to(torch.uint8)


def test_names_and_families():
    assert len(CORRUPTIONS) == 15 and CORRUPTIONS[0] == "gaussian_noise"
    assert CORRUPTIONS[-1] == "jpeg_compression"
    assert set(FAMILIES) == set(CORRUPTIONS)
    assert [FAMILIES[n] for n in ("shot_noise", "glass_blur", "fog", "pixelate")] == [
        "noise",
        "blur",
        "weather",
        "digital",
    ]


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_each_corruption_at_each_severity(images, name):
    changes = []
    for severity in range(1, 6):
        out = corrupt(images, name, severity)
        assert out.dtype == torch.uint8 and out.shape == images.shape
        assert torch.equal(out, corrupt(images, name, severity)), "not deterministic"
        assert not torch.equal(out, images)
        changes.append((out.float() - images.float()).abs().mean().item())
    if name in UNORDERED:
        return
    if name in ONLY_ENDS:
        assert changes[4] > changes[0], changes
    else:
        assert all(a < b for a, b in zip(changes, changes[1:], strict=False)), changes


def test_seed_changes_the_random_draws_only(images):
    assert not torch.equal(corrupt(images, "fog", 2, seed=1), corrupt(images, "fog", 2))
    assert torch.equal(corrupt(images, "contrast", 2, seed=1), corrupt(images, "contrast", 2))


def test_bad_arguments_are_one_line_errors(images):
    for args, message in (
        ((images.float(), "fog", 1), "uint8 images"),
        ((images[:, :2], "fog", 1), "C 3 \\(colour\\) or 1 \\(grey\\)"),  # 1 channel: corrupted
        ((images, "fog", 6), "severity must be one of 1..5"),
        ((images, "rain", 1), "unknown corruption 'rain'"),
    ):
        with pytest.raises(CifarlabError, match=message) as e:
            corrupt(*args)
        assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "text, names",
    [
        ("all", list(CORRUPTIONS)),
        ("fog", ["fog"]),
        (" fog, gaussian_noise ,fog", ["fog", "gaussian_noise"]),
    ],
)
def test_parse_corruptions(text, names):
    assert parse_corruptions(text) == names


@pytest.mark.parametrize("text", ["rain", "fog,rain", "", " , ", "all,fog"])
def test_parse_corruptions_rejects(text):
    with pytest.raises(CifarlabError, match="choose all or names from: gaussian_noise") as e:
        parse_corruptions(text)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "text, severities",
    [
        ("1-5", [1, 2, 3, 4, 5]),
        ("2-4", [2, 3, 4]),
        ("1,3,5", [1, 3, 5]),
        ("5,1-2", [1, 2, 5]),
        (" 3 ", [3]),
    ],
)
def test_parse_severities(text, severities):
    assert parse_severities(text) == severities


@pytest.mark.parametrize("text", ["0-5", "1-6", "6", "", "4-2", "a", "1,,2", "1.5", "-1"])
def test_parse_severities_rejects(text):
    with pytest.raises(CifarlabError, match="give severities 1..5 as a range") as e:
        parse_severities(text)
    assert "\n" not in str(e.value)


def test_cache_is_written_and_reused(images, tmp_path, monkeypatch):
    calls = []
    real = corruptions.corrupt

    def counting(*args, **kwargs):
        calls.append(args[1:3])
        return real(*args, **kwargs)

    monkeypatch.setattr(corruptions, "corrupt", counting)
    first = corrupted(images, "pixelate", 3, tmp_path, "abc123")
    path = tmp_path / "abc123" / "pixelate-3.npy"
    assert path.is_file() and calls == [("pixelate", 3)]
    assert np.array_equal(np.load(path), first.numpy())
    again = corrupted(images, "pixelate", 3, tmp_path, "abc123")
    assert torch.equal(again, first) and calls == [("pixelate", 3)]  # read, not made again
    assert torch.equal(first, real(images, "pixelate", 3))
    corrupted(images, "pixelate", 3, tmp_path, "abc123", seed=2)
    assert (tmp_path / "abc123" / "pixelate-3-seed2.npy").is_file() and len(calls) == 2
    path.write_bytes(b"not an array")  # a damaged file is made again
    assert torch.equal(corrupted(images, "pixelate", 3, tmp_path, "abc123"), first)
    assert len(calls) == 3
    corrupted(images, "pixelate", 3, None, "abc123")  # no cache: made each time
    assert len(calls) == 4 and not list(tmp_path.glob("*/.*tmp*"))
