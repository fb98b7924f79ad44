"""What a Ray worker sends home: a run folder's files, never a half-written temporary or
its lock."""

from __future__ import annotations

from cifarlab.experiments import ray_executor


def test_a_killed_write_is_not_shipped_with_a_run_folder(tmp_path):
    (tmp_path / "summary.json").write_text("{}")
    (tmp_path / ".summary.json.tmp4242").write_text("half")
    (tmp_path / ".lock").write_text("{}")
    assert list(ray_executor.folder_files(tmp_path)) == ["summary.json"]
