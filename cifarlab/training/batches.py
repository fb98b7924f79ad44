"""Batches on the training device: a uint8 dataset kept on the device, shuffled and
augmented there a whole batch at a time (flip-crop, flip, flip-translate), normalized as it
leaves. Random draws come from a seeded CPU generator, so a run gives the same batches on
any device.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from cifarlab.config.options import FLIP_AUGMENTS
from cifarlab.data import Normalize, Split


def flip_crop(x: torch.Tensor, flip: torch.Tensor, shift: torch.Tensor, pad: int = 4):
    """Per-image horizontal flip and random crop after zero padding, for a whole batch.

    flip: bool (B,), shift: int (B, 2) in [0, 2*pad]. Same as torchvision's
    RandomHorizontalFlip + RandomCrop(32, padding=pad) image by image, without a loop.
    """
    b, c, h, w = x.shape
    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
    xp = F.pad(x, (pad, pad, pad, pad))
    ar_h = torch.arange(h, device=x.device)
    ar_w = torch.arange(w, device=x.device)
    rows = (shift[:, 0:1] + ar_h).view(b, 1, h, 1)
    cols = (shift[:, 1:2] + ar_w).view(b, 1, 1, w)
    bi = torch.arange(b, device=x.device).view(b, 1, 1, 1)
    ci = torch.arange(c, device=x.device).view(1, c, 1, 1)
    return xp[bi, ci, rows, cols]


TRANSLATE = 2  # pixels of the flip-translate augmentation


def reflect_index(i: torch.Tensor, n: int) -> torch.Tensor:
    """Index into 0..n-1 of position i in a reflect-padded axis (edge not repeated)."""
    i = i.abs()
    return torch.where(i > n - 1, 2 * (n - 1) - i, i)


def translate(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Per-image translation with reflect padding, for a whole batch (any dtype).

    shift: int (B, 2) of (dy, dx), |d| < H: out[b, :, i, j] = x[b, :, i + dy, j + dx],
    positions outside the image mirrored back in. Same as F.pad(x, (p,) * 4, "reflect")
    followed by a crop at (p + dy, p + dx).
    """
    b, c, h, w = x.shape
    rows = reflect_index(shift[:, 0:1] + torch.arange(h, device=x.device), h).view(b, 1, h, 1)
    cols = reflect_index(shift[:, 1:2] + torch.arange(w, device=x.device), w).view(b, 1, 1, w)
    bi = torch.arange(b, device=x.device).view(b, 1, 1, 1)
    ci = torch.arange(c, device=x.device).view(1, c, 1, 1)
    return x[bi, ci, rows, cols]


class DeviceLoader:
    """Batches from a uint8 dataset kept on the training device.

    Shuffling and augmentation draw from a seeded CPU generator (so a run gives the same
    batches on any device); indexing, augmentation and normalization run on the device, a
    whole batch at a time. With world_size > 1 each rank takes its shard of the epoch's
    permutation (rank::world_size), after dropping the tail that does not divide evenly.
    `batch_size` is then per rank: the ranks together go through global batches of
    batch_size * world_size images, rank r taking images r, r + world_size, ... of each,
    and the augmentation is drawn for the whole global batch (every rank draws the same
    numbers, so the generators stay in step) before each rank takes its share. So N ranks
    see exactly the images, flips and crops that one process sees at the global batch.

    `index` holds the indices (into the split, on the device) of the batch last yielded.
    Each batch leaves as model input: `normalize` (uint8 -> normalized float32) is applied
    on the device. Augmentations: flip-crop (random flip, 4-pixel crop after zero padding),
    flip (random flip), flip-translate (random flip, shift by up to TRANSLATE pixels with
    reflect padding). alt_flip: instead of a coin toss per image and epoch, each image starts
    flipped or not (drawn once, here) and alternates every epoch (set_epoch), as airbench
    does: every image is seen both ways within two epochs.
    """

    def __init__(
        self,
        split: Split,
        batch_size: int,
        device: torch.device,
        normalize: Normalize,
        *,
        shuffle: bool = False,
        augment: str = "none",
        generator: torch.Generator | None = None,
        rank: int = 0,
        world_size: int = 1,
        alt_flip: bool = False,
        crop: int = 0,
        crop_epochs: int = 0,
    ) -> None:
        self.images = split.images.to(device)
        self.labels = split.labels.to(device)
        self.batch_size = batch_size
        self.device = device
        self.normalize = normalize.to(device)
        self.shuffle = shuffle
        self.augment = augment
        self.generator = generator
        self.rank = rank
        self.world_size = world_size
        self.epoch = 1
        self.keep: torch.Tensor | None = None
        self.index = torch.empty(0, dtype=torch.long)  # the last batch's, into the split
        self.crop, self.crop_epochs = crop, crop_epochs
        self.alt_flip = alt_flip and augment in FLIP_AUGMENTS
        if self.alt_flip:
            self.first_flip = torch.rand(len(self.labels), generator=generator) < 0.5

    def set_epoch(self, epoch: int, keep: torch.Tensor | None = None) -> None:
        """The epoch (from 1) of the next pass; alternating flips depend on its parity.
        keep (one process only): a bool mask over the split, the images the pass takes
        (--prune-easy), in as many batches as a whole pass, each smaller; None: every one."""
        if keep is not None and self.world_size > 1:
            raise ValueError("a pass over part of the split runs in one process only")
        self.epoch, self.keep = epoch, keep

    @property
    def num_samples(self) -> int:
        """Images this rank sees per epoch."""
        return len(self.labels) // self.world_size

    def __len__(self) -> int:
        return math.ceil(self.num_samples / self.batch_size)

    def __iter__(self):
        n = len(self.labels)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        order = order[: self.num_samples * self.world_size]
        r, w = self.rank, self.world_size
        if self.keep is None:
            batches = order.split(self.batch_size * w)
        else:  # as many batches as a whole pass, of the kept images
            batches = order[self.keep[order]].tensor_split(len(self))
        for idx in batches:
            flip, shift = self._draw(idx)
            idx = idx[r::w].to(self.device, non_blocking=True)
            self.index = idx
            x = self.images[idx]
            if flip is not None:
                flip = flip[r::w].to(self.device, non_blocking=True)
            if shift is not None:
                shift = shift[r::w].to(self.device, non_blocking=True)
            if self.augment == "flip-crop":
                x = flip_crop(x, flip, shift)
            elif self.augment in ("flip", "flip-translate"):
                x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
                if shift is not None:
                    x = translate(x, shift)
            if self.crop and self.epoch <= self.crop_epochs:
                top, left = (x.shape[2] - self.crop) // 2, (x.shape[3] - self.crop) // 2
                x = x[:, :, top : top + self.crop, left : left + self.crop]
            yield self.normalize(x), self.labels[idx]

    def _draw(self, idx: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Flips and shifts of a (global) batch, drawn on the CPU generator."""
        if self.augment not in FLIP_AUGMENTS:
            return None, None
        n = len(idx)
        if self.alt_flip:
            flip = self.first_flip[idx] ^ (self.epoch % 2 == 0)
        else:
            flip = torch.rand(n, generator=self.generator) < 0.5
        shift = None
        if self.augment == "flip-crop":
            shift = torch.randint(0, 9, (n, 2), generator=self.generator)
        elif self.augment == "flip-translate":
            shift = torch.randint(-TRANSLATE, TRANSLATE + 1, (n, 2), generator=self.generator)
        return flip, shift
