"""A run worker in its own process (`python -m swiftbolt_pipeline.soak.worker TAGS_JSON`):
executes one `bars_job` run with the given tags on the instance of DAGSTER_HOME, like the run
worker the daemon starts. The simulation SIGKILLs it mid-run."""

from __future__ import annotations

import json
import sys
import warnings

import dagster as dg

from swiftbolt_pipeline.defs.build import build_definitions
from swiftbolt_pipeline.defs.jobs import BARS_JOB


def main(argv: list[str]) -> int:
    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    warnings.filterwarnings("ignore", category=dg.PreviewWarning)
    tags = json.loads(argv[0])
    job = build_definitions().resolve_job_def(BARS_JOB)
    with dg.DagsterInstance.get() as instance:
        result = job.execute_in_process(instance=instance, tags=tags, raise_on_error=False)
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
