"""Run folder names: a plugin model's is one plain name, a file model's cache folder is its own."""

from __future__ import annotations

import pytest

from cifarlab.experiments.runner import configs_for
from cifarlab.runs.folder import model_slug, run_dir_for
from tests.conftest import tiny_flags


@pytest.mark.parametrize(
    "model, slug",
    [
        ("base", "base"),
        ("nets/mine.py:small", "mine-small"),
        ("pkg.nets:build", "pkg.nets-build"),
        ("C:\\nets\\my net.py:tiny", "my-net-tiny"),
    ],
)
def test_run_folders_of_plugin_models_are_one_plain_name(model, slug, tmp_path):
    assert model_slug(model) == slug
    assert ":" not in slug and "/" not in slug and "\\" not in slug


def test_run_cache_folder_of_a_file_model(tmp_path, cifar_dir):
    nets = tmp_path / "nets"
    nets.mkdir()
    (nets / "mine.py").write_text(
        "import torch.nn as nn\n\ndef small(num_classes):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(3072, num_classes))\n"
    )
    (cfg,) = configs_for({"model": f"{nets}/mine.py:small", **tiny_flags(cifar_dir)}, [{}])
    folder = run_dir_for(tmp_path / "runs", cfg)
    assert folder.parent == tmp_path / "runs" and folder.name.startswith("mine-small-")
