"""Reference runs that several test modules compare against, trained once per session."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests import in_process
from tests.processes import finished, run_env
from tests.training.reference_runs import DDP_ARGS


@pytest.fixture(scope="session")
def ddp_reference(tmp_path_factory, prepared_sample: Path) -> dict[str, Path]:
    """The run folders of DDP_ARGS on one process (`one`: 2 micro-batches a step) and on two gloo processes
    (`two`: 1 micro-batch each), uninterrupted: what resumed, killed and multi-node runs must end at. The one-process
    run runs in this process (Lightning starts the second rank of a DDP run as `sys.argv` again: pytest's, here)."""
    tmp = tmp_path_factory.mktemp("ddp-reference")
    cache = shutil.copytree(prepared_sample, tmp / "cache")
    return {"one": finished(DDP_ARGS, run_env(tmp / "one", cache), "the one-process reference run", in_process.cli),
            "two": finished([*DDP_ARGS, "trainer=cpu_ddp"], run_env(tmp / "two", cache), "the two-process reference run")}
