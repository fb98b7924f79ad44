"""The command line answers --help without importing torch, matplotlib or TensorBoard."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.slow
def test_the_command_line_starts_without_torch():
    code = (
        "import sys\nfrom cifarlab.cli.main import cli\n"
        "try:\n    cli.main(['--help'], standalone_mode=False)\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'matplotlib', 'tensorboard') if m in sys.modules]\n"
        "print('heavy:', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "heavy: []" in out.stdout, out.stdout + out.stderr
