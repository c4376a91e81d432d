"""`swiftbolt worker`: this host executes the pipeline's steps for runs whose executor is
Celery (SWIFTBOLT_EXECUTOR=celery), thin over Celery's own worker with Dagster's step task
and the code location loaded (services/executor.py)."""

from __future__ import annotations

import logging
import os
from typing import Any

import click

from swiftbolt_pipeline.config import Settings
from swiftbolt_pipeline.services.executor import worker_app
from swiftbolt_pipeline.services.runtime import open_runtime
from swiftbolt_pipeline.storage.database import redact


@click.command()
@click.option(
    "--name",
    default=None,
    help="Worker name, unique among the hosts (default: swiftbolt-PID@HOSTNAME).",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=None,
    help="Steps this host executes at once (default: its CPU count).",
)
def worker(name: str | None, concurrency: int | None) -> None:
    """Execute steps from the broker's queue (SWIFTBOLT_CELERY_BROKER) until stopped; every
    host on the same PostgreSQL (DATABASE_URL) and Redis (SWIFTBOLT_CELERY_BACKEND), with
    the providers configured in its environment."""
    app = worker_app(Settings.from_env())  # refuses a missing broker, backend or database
    runtime = open_runtime()
    settings = runtime.settings
    # Loaded once here, inherited by the worker's processes: each step rebuilds its job from
    # this module (the code location), reading this host's environment.
    import swiftbolt_pipeline.definitions  # noqa: F401

    node = name or f"swiftbolt-{os.getpid()}"
    click.echo(
        f"worker {node}: broker {redact(settings.celery_broker or '')}, "
        f"database {redact(runtime.database_url)}",
        err=True,
    )
    from celery.signals import after_setup_logger

    after_setup_logger.connect(_quiet_task_results, weak=False)
    argv = ["worker", "--loglevel=INFO", "-n", f"{node}@%h"]
    argv += ["--prefetch-multiplier=1", "--without-gossip", "--without-mingle"]
    if concurrency is not None:
        argv += ["--concurrency", str(concurrency)]
    app.worker_main(argv)


def _quiet_task_results(**_: Any) -> None:
    """Celery logs each finished task with its return value: for a Dagster step, every event
    it recorded, serialized. Those stay in Dagster's run log; the worker logs warnings."""
    logging.getLogger("celery.app.trace").setLevel(logging.WARNING)
