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


def test_a_finished_audit_is_kept_only_for_the_same_checkpoint(tmp_path):
    """A study run again keeps OUT/audit where it audited the main run's checkpoint as it is."""
    from cifarlab.files import file_digest, write_json
    from cifarlab.study.data_audit import finished_audit

    run, folder = tmp_path / "runs" / "improved", tmp_path / "audit"
    run.mkdir(parents=True)
    folder.mkdir()
    (run / "checkpoint.pt").write_bytes(b"weights")
    assert finished_audit(folder, str(run)) is None  # never audited
    done = {"run": str(run), "checkpoint_sha256": file_digest(run / "checkpoint.pt")}
    write_json(folder / "audit.json", done)
    assert finished_audit(folder, str(run)) == done
    assert finished_audit(folder, str(tmp_path / "other")) is None  # another run
    (run / "checkpoint.pt").write_bytes(b"retrained")
    assert finished_audit(folder, str(run)) is None  # the run was trained again
    write_json(folder / "audit.json", {"run": str(run)})  # written before the digest
    assert finished_audit(folder, str(run)) is None
