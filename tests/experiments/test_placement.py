"""ExecutorSettings: where a command's runs train, one object checked as it is made."""

import pytest

from cifarlab.errors import CifarlabError
from cifarlab.experiments.executors import LocalExecutor
from cifarlab.experiments.placement import ExecutorSettings
from tests.conftest import cli


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("dask",), "--executor must be one of local, ray, not 'dask'"),
        (("local", "auto"), "--ray-address and --ray-cpus-per-run need --executor ray"),
        (("local", None, 2), "--ray-address and --ray-cpus-per-run need --executor ray"),
        (("ray", None, 0), "--ray-cpus-per-run must be at least 1, not 0"),
    ],
)
def test_bad_settings_are_one_line_when_made(args, message):
    with pytest.raises(CifarlabError, match=message):
        ExecutorSettings(*args)


def test_settings_from_their_mapping_and_jobs_only_with_local():
    settings = ExecutorSettings.of({"name": "ray", "ray_address": "auto"})
    assert settings == ExecutorSettings("ray", "auto") and ExecutorSettings.of(settings) is settings
    assert ExecutorSettings.of(None) == ExecutorSettings("local")
    with pytest.raises(CifarlabError, match="--jobs is for --executor local"):
        settings.check(jobs=2)
    made = ExecutorSettings().make(jobs=3, progress=False)
    assert isinstance(made, LocalExecutor) and made.jobs == 3


def test_a_bad_executor_option_stops_a_sweep_before_anything_is_written(
    cifar_dir, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "sweep"
    args = ["sweep", "--data-dir", cifar_dir, "--lr", "0.1,0.2", "--out", out]
    assert cli(monkeypatch, *args, "--ray-address", "auto") == 2
    assert "need --executor ray" in capsys.readouterr().err and not out.exists()


def test_jobs_0_is_refused_before_a_folder_is_made(cifar_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "sweep"
    args = ["sweep", "--data-dir", cifar_dir, "--lr", "0.1,0.2", "--jobs", "0", "--out", out]
    assert cli(monkeypatch, *args) == 2
    assert "'--jobs': 0 is not in the range x>=1" in capsys.readouterr().err
    assert not out.exists()
