"""The built-in dataset readers, registered by name (see `cifarlab datasets`)."""

from __future__ import annotations

from cifarlab.data import cifar, idx, imagefolder
from cifarlab.data.dataset import DatasetSpec, register_dataset

register_dataset(
    DatasetSpec(
        "cifar10",
        "CIFAR-10",
        "60,000 32x32 colour images in 10 classes (50,000 train, 10,000 test)",
        f"{cifar.CIFAR10_FOLDER}/",
        cifar.locate_cifar10,
        cifar.read_cifar10,
        cifar.download_cifar10,
    )
)
register_dataset(
    DatasetSpec(
        "cifar100",
        "CIFAR-100",
        "60,000 32x32 colour images in 100 classes, or 20 superclasses with --labels coarse",
        f"{cifar.CIFAR100_FOLDER}/ (train, test, meta)",
        cifar.locate_cifar100,
        cifar.read_cifar100,
        cifar.download_cifar100,
    )
)
register_dataset(
    DatasetSpec(
        "mnist",
        "MNIST",
        "70,000 28x28 grey images of handwritten digits, 10 classes",
        idx.EXPECTED,
        idx.locate_mnist,
        idx.read_mnist,
        idx.download_mnist,
    )
)
register_dataset(
    DatasetSpec(
        "fashion-mnist",
        "Fashion-MNIST",
        "70,000 28x28 grey images of clothing, 10 classes",
        idx.EXPECTED,
        idx.locate_fashion,
        idx.read_fashion,
        idx.download_fashion,
    )
)
register_dataset(
    DatasetSpec(
        "imagefolder",
        "ImageFolder",
        "your images: train/<class>/* and test/<class>/* in any Pillow format, resized to "
        "--image-size (without test/, --test-fraction of each class is the test set)",
        imagefolder.EXPECTED,
        imagefolder.locate,
        imagefolder.read,
    )
)
