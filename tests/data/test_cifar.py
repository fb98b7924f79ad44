import pickle
import urllib.error

import numpy as np
import pytest
import torch

from cifarlab import data as D
from cifarlab.errors import CifarlabError
from tests.conftest import CLASSES, write_cifar


def test_loads_parent_and_batches_folder(cifar_dir):
    for path in (cifar_dir, cifar_dir / "cifar-10-batches-py"):
        d = D.load_cifar10(path)
        assert d.train.images.shape == (50, 3, 32, 32)
        assert d.train.images.dtype == torch.uint8
        assert d.train.labels.dtype == torch.int64
        assert d.test.images.shape == (20, 3, 32, 32)
        assert d.classes == CLASSES


def test_pixels_follow_cifar_layout(cifar_dir):
    with open(cifar_dir / "cifar-10-batches-py" / "data_batch_1", "rb") as f:
        raw = pickle.load(f, encoding="bytes")
    d = D.load_cifar10(cifar_dir)
    row = raw[b"data"][0]
    # 1024 red, then 1024 green, then 1024 blue, each row-major 32x32
    assert np.array_equal(d.train.images[0, 0].numpy(), row[:1024].reshape(32, 32))
    assert np.array_equal(d.train.images[0, 2].numpy(), row[2048:].reshape(32, 32))
    assert d.train.labels[0] == raw[b"labels"][0]


def test_env_var_is_used(cifar_dir, monkeypatch):
    monkeypatch.setenv("CIFARLAB_DATA", str(cifar_dir))
    assert len(D.load_cifar10().train) == 50


def test_a_wrong_env_var_is_named_as_the_source_of_the_path(tmp_path, monkeypatch):
    monkeypatch.setenv("CIFARLAB_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(CifarlabError, match=r"nowhere \(from \$CIFARLAB_DATA\) does not exist"):
        D.load_cifar10()
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("CIFARLAB_DATA", str(tmp_path / "empty"))
    with pytest.raises(CifarlabError, match=r"empty \(from \$CIFARLAB_DATA\) \(expected"):
        D.load_cifar10()


def no_download(monkeypatch):
    import torchvision.datasets

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", lambda *a, **k: pytest.fail("download"))


def test_cache_is_used_without_download(tmp_path, monkeypatch):
    write_cifar(tmp_path / "cache" / "cifarlab")
    no_download(monkeypatch)
    assert len(D.load_cifar10().test) == 20


def test_missing_folder_says_where(tmp_path):
    with pytest.raises(CifarlabError, match=r"does not exist.*--data-dir"):
        D.load_cifar10(tmp_path / "nope")


def test_folder_without_data(tmp_path):
    with pytest.raises(
        CifarlabError, match=r"no CIFAR-10 files in .*expected cifar-10-batches-py/.*CIFARLAB_DATA"
    ):
        D.load_cifar10(tmp_path)


def test_missing_batch_file_is_named(cifar_dir):
    (cifar_dir / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(CifarlabError, match=r"missing batch file .*data_batch_3"):
        D.load_cifar10(cifar_dir)


def test_truncated_batch_file_is_named(cifar_dir):
    path = cifar_dir / "cifar-10-batches-py" / "test_batch"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CifarlabError, match=r"test_batch is truncated or corrupt"):
        D.load_cifar10(cifar_dir)


def _rewrite(path, changes):
    with open(path, "rb") as f:
        obj = pickle.load(f, encoding="bytes")
    obj.update(changes)
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def test_wrong_shape(cifar_dir):
    path = cifar_dir / "cifar-10-batches-py" / "data_batch_2"
    _rewrite(path, {b"data": np.zeros((10, 1000), dtype=np.uint8)})
    with pytest.raises(CifarlabError, match=r"data_batch_2: data has shape \(10, 1000\)"):
        D.load_cifar10(cifar_dir)


def test_label_count_mismatch(cifar_dir):
    path = cifar_dir / "cifar-10-batches-py" / "data_batch_2"
    _rewrite(path, {b"labels": [0, 1]})
    with pytest.raises(CifarlabError, match=r"labels for 10 images"):
        D.load_cifar10(cifar_dir)


@pytest.mark.parametrize("bad", [10, -1])
def test_label_out_of_range(cifar_dir, bad):
    path = cifar_dir / "cifar-10-batches-py" / "data_batch_5"
    _rewrite(path, {b"labels": [bad] + [0] * 9})
    with pytest.raises(CifarlabError, match=rf"label {bad} is outside 0..9"):
        D.load_cifar10(cifar_dir)


def test_offline_download_failure_suggests_data_dir(monkeypatch):
    import torchvision.datasets

    def offline(*a, **k):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    with pytest.raises(CifarlabError, match=r"could not download CIFAR-10.*--data-dir"):
        D.load_cifar10()


def test_no_download_flag(monkeypatch):
    no_download(monkeypatch)
    with pytest.raises(CifarlabError, match="not in the cache"):
        D.load_cifar10(download=False)


def test_split_is_deterministic_disjoint_and_covers():
    a1, b1 = D.split_indices(100, 30, seed=7)
    a2, b2 = D.split_indices(100, 30, seed=7)
    assert torch.equal(a1, a2) and torch.equal(b1, b2)
    assert len(a1) == 30 and len(b1) == 70
    assert sorted(torch.cat([a1, b1]).tolist()) == list(range(100))
    a3, _ = D.split_indices(100, 30, seed=8)
    assert not torch.equal(a1, a3)


def test_split_is_the_same_on_every_machine():
    # torch's CPU generator (mt19937) is platform independent: its output is pinned here,
    # so that a change (of split_indices, or of torch's randperm) shows as a failure
    first, rest = D.split_indices(10, 5, seed=0)
    assert (first.tolist(), rest.tolist()) == ([4, 1, 7, 5, 3], [9, 0, 8, 6, 2])


def test_make_splits_val_from_test(cifar_dir):
    d = D.load_cifar10(cifar_dir)
    s = D.make_splits(d, "test", seed=1)
    assert len(s.train) == 50 and len(s.val) == 10 and len(s.test) == 10
    # the two halves of the test set are disjoint and cover it
    both = torch.cat([s.val.images, s.test.images]).view(20, -1)
    assert len({tuple(r.tolist()) for r in both}) == 20


def test_make_splits_val_from_train(cifar_dir):
    d = D.load_cifar10(cifar_dir)
    s = D.make_splits(d, "train", val_size=15, seed=1)
    assert len(s.train) == 35 and len(s.val) == 15 and len(s.test) == 20


def test_make_splits_rejects_bad_input(cifar_dir):
    d = D.load_cifar10(cifar_dir)
    with pytest.raises(CifarlabError, match="--val-from"):
        D.make_splits(d, "elsewhere")
    n = len(d.train)
    message = f"--val-size 50: the validation images come from the training set's {n:,}"
    with pytest.raises(CifarlabError, match=message + ", which must keep some; give --val-size"):
        D.make_splits(d, "train", val_size=50)
    with pytest.raises(CifarlabError, match="--val-size 0: .* test set's"):
        D.make_splits(d, "test", val_size=0)
