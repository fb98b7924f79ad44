"""Every name `import cifarlab` offers resolves."""

from __future__ import annotations


def test_every_public_name_resolves():
    """`import cifarlab` names its API lazily: each name must import (run_tune among them)."""
    import cifarlab

    for name in cifarlab.__all__:
        assert getattr(cifarlab, name) is not None, name
    from cifarlab.tune.search import run_tune

    assert cifarlab.run_tune is run_tune
