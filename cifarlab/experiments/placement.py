"""Where a command's runs train, as one object: ExecutorSettings (--executor, --ray-address,
--ray-cpus-per-run), checked when made, and make_executor, the executor they name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cifarlab.config.choices import EXECUTORS
from cifarlab.data import Datasets
from cifarlab.errors import CifarlabError
from cifarlab.experiments.executors import Executor, LocalExecutor
from cifarlab.experiments.ray_executor import RayExecutor


def make_executor(
    name: str = "local",
    *,
    jobs: int = 1,
    data: Datasets | None = None,
    progress: bool = True,
    ray_address: str | None = None,
    ray_cpus_per_run: int | None = None,
) -> Executor:
    """The executor of --executor local|ray with its options (checked here, before work)."""
    return ExecutorSettings(name, ray_address, ray_cpus_per_run).make(jobs, data, progress)


@dataclass(frozen=True)
class ExecutorSettings:
    """Where a command's runs are carried out: --executor local|ray, --ray-address and
    --ray-cpus-per-run, checked once when made (as tracking's options are one Tracking).
    `make` builds the executor for a Runner; `of` also takes the older mapping form
    ({"name": ..., "ray_address": ..., "ray_cpus_per_run": ...})."""

    name: str = "local"
    ray_address: str | None = None
    ray_cpus_per_run: int | None = None

    def __post_init__(self) -> None:
        if self.name not in EXECUTORS:
            raise CifarlabError(
                f"--executor must be one of {', '.join(EXECUTORS)}, not {self.name!r}"
            )
        if self.name == "local" and (self.ray_address or self.ray_cpus_per_run):
            raise CifarlabError("--ray-address and --ray-cpus-per-run need --executor ray")
        if self.ray_cpus_per_run is not None and self.ray_cpus_per_run < 1:
            raise CifarlabError(
                f"--ray-cpus-per-run must be at least 1, not {self.ray_cpus_per_run}"
            )

    @classmethod
    def of(cls, value: ExecutorSettings | dict[str, Any] | None) -> ExecutorSettings:
        """These settings from what a caller passed: settings, their mapping, or None
        (local)."""
        if isinstance(value, ExecutorSettings):
            return value
        return cls(**(value or {}))

    def check(self, jobs: int) -> None:
        """--jobs with these settings: worker processes are the local executor's."""
        if self.name == "ray" and jobs != 1:
            raise CifarlabError("--jobs is for --executor local; Ray places the runs itself")

    def make(self, jobs: int = 1, data: Datasets | None = None, progress: bool = True) -> Executor:
        """The executor these settings name, for `jobs` local workers over `data`."""
        self.check(jobs)
        if self.name == "local":
            return LocalExecutor(jobs, data, progress)
        return RayExecutor(self.ray_address, self.ray_cpus_per_run)
