"""study.json never says "running" after a step failed or the study was interrupted
(issue 26, defect 2): it says which step stopped it and why, and a rerun goes on."""

import json

import pytest

from cifarlab.errors import CifarlabError
from cifarlab.study import run as study_run


@pytest.mark.parametrize(
    ("error", "status", "message"),
    [
        (CifarlabError("corrupt needs uint8 images"), "failed", "corrupt needs uint8 images"),
        (KeyboardInterrupt(), "interrupted", "interrupted"),
    ],
)
def test_a_step_that_stops_the_study_is_recorded(
    cifar_dir, tmp_path, monkeypatch, error, status, message
):
    def boom():
        raise error

    monkeypatch.setattr(study_run, "study_steps", lambda *a: {"analysis": boom})
    out = tmp_path / "study"
    with pytest.raises(type(error)):
        study_run.run_study(out, quick=True, data_options={"data_dir": str(cifar_dir)})
    state = json.loads((out / "study.json").read_text())
    assert state["status"] == status and state["error"] == message
    assert state["stopped_in"].startswith("1/1 ") and "identity" in state
