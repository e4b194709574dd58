"""Reference runs that several test modules compare against, trained once per session."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.processes import finished, run_env
from tests.training.reference_runs import DDP_ARGS


@pytest.fixture(scope="session")
def ddp_reference(tmp_path_factory, prepared_sample: Path) -> dict[str, Path]:
    """The run folders of DDP_ARGS on one process (`one`: 2 micro-batches a step) and on two gloo processes
    (`two`: 1 micro-batch each), uninterrupted: what resumed, killed and multi-node runs must end at."""
    tmp = tmp_path_factory.mktemp("ddp-reference")
    cache = shutil.copytree(prepared_sample, tmp / "cache")
    return {name: finished([*DDP_ARGS, *extra], run_env(tmp / name, cache), f"the {name}-process reference run")
            for name, extra in (("one", []), ("two", ["trainer=cpu_ddp"]))}
