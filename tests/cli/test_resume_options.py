"""`train --resume` refuses options that would change the run."""

from __future__ import annotations

import pytest

from cifarlab.cli.main import main
from tests.conftest import copy_run


def test_resume_from_cli_rejects_other_options(base_run, tmp_path, monkeypatch, capsys):
    out = copy_run(base_run, tmp_path / "run")
    monkeypatch.setattr("sys.argv", ["cifarlab", "train", "--resume", str(out), "--out", "x"])
    with pytest.raises(SystemExit):
        main()
    assert "drop --config/--out" in capsys.readouterr().err
