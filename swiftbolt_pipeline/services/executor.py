"""Where a run's steps execute. By default in the process that runs it (one machine). With
`SWIFTBOLT_EXECUTOR=celery`, on Celery workers (`swiftbolt worker`) on any number of hosts,
through Dagster's own `celery_executor`: the process running a run only orchestrates it,
sending each step to the broker's queue, and whichever worker is free executes it.

What the hosts share: PostgreSQL (Dagster's instance storage, the bars, the token bucket and
the circuit breakers, so the provider budget stays global), the broker (the queue of steps)
and Redis (step results, and the outputs one step hands the next, which `RedisStepOutputs`
keeps there instead of a local disk another host could not read).

A task is acknowledged only after it ran (`task_acks_late`): when a host dies mid-step, the
broker hands the step to another worker, which runs it again (fetches resume from their
checkpoints and bars are replaced, never appended, so a step may run twice)."""

from __future__ import annotations

import contextlib
import os
import pickle
import warnings
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from datetime import date
from multiprocessing import get_context
from typing import TYPE_CHECKING, Any

import dagster as dg
from dagster._core.definitions.reconstruct import ReconstructableRepository
from dagster._core.instance.ref import InstanceRef
from pydantic import Field

from swiftbolt_pipeline.config import CELERY, Settings
from swiftbolt_pipeline.core.models import InvalidInput
from swiftbolt_pipeline.defs.jobs import BARS_JOB
from swiftbolt_pipeline.names import range_tags
from swiftbolt_pipeline.services.instance import dagster_home
from swiftbolt_pipeline.services.launch import RunOutcome, run_outcome, symbol_tags

if TYPE_CHECKING:
    from celery import Celery

# Celery and dagster-celery are imported where the Celery executor is used: loading the
# definitions by default (in process) does not pay for them.

# The module whose `defs` every host loads: the run's steps are rebuilt from it on the worker.
CODE_LOCATION_MODULE = "swiftbolt_pipeline.definitions"
# How long step outputs stay in Redis: long enough to re-execute a failed run from its
# failure, short enough that Redis never fills up.
STEP_OUTPUT_TTL_S = 7 * 24 * 3600


def distributed(settings: Settings) -> bool:
    return settings.executor == CELERY


def _env_or_value(name: str, value: str | None) -> Any:
    """A reference Dagster resolves on each host (`{"env": NAME}`) when this process's
    environment holds the value, so the URL (and its password) is never stored in the
    instance; a value from elsewhere as it is."""
    if value is not None and os.environ.get(name, "").strip() == value:
        return {"env": name}
    return value


def celery_options() -> dict[str, Any]:
    """Celery settings shared by the runs' executor and the workers."""
    return {
        # dagster-celery binds its queue `dagster` with the pattern `dagster.#` and publishes
        # steps with the routing key `dagster.execute_plan`: a pattern needs a topic exchange
        # (RabbitMQ drops the steps on Celery's default direct exchange).
        "task_default_exchange_type": "topic",
        # Acknowledged after the step ran: a host lost mid-step gives it back to the queue.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # A worker reserves no step beyond the ones it is running.
        "worker_prefetch_multiplier": 1,
        "broker_connection_retry_on_startup": True,
    }


def executor_def(settings: Settings) -> dg.ExecutorDefinition:
    """The executor of the code location's jobs: in process, or Celery."""
    if not distributed(settings):
        return dg.in_process_executor
    from dagster_celery import celery_executor

    return celery_executor.configured(
        {
            "broker": _env_or_value("SWIFTBOLT_CELERY_BROKER", settings.celery_broker),
            "backend": _env_or_value("SWIFTBOLT_CELERY_BACKEND", settings.celery_backend),
            "config_source": celery_options(),
        },
        name="celery",
    )


class RedisStepOutputs(dg.ConfigurableIOManager):
    """Step outputs pickled into Redis (the Celery result backend all hosts reach), keyed by
    run, step and output, expiring after a week. Only for the small hand-overs between the
    steps of one asset: bars go to PostgreSQL, never through here."""

    url: str = Field(description="redis:// URL (SWIFTBOLT_CELERY_BACKEND)")
    ttl_s: int = STEP_OUTPUT_TTL_S

    def _client(self) -> Any:
        import redis

        return redis.Redis.from_url(self.url)

    @staticmethod
    def _key(identifier: Sequence[str]) -> str:
        return "swiftbolt:step-output:" + "/".join(identifier)

    def handle_output(self, context: dg.OutputContext, obj: object) -> None:
        with contextlib.closing(self._client()) as client:
            client.set(self._key(context.get_identifier()), pickle.dumps(obj), ex=self.ttl_s)

    def load_input(self, context: dg.InputContext) -> object:
        upstream = context.upstream_output
        if upstream is None:
            raise RuntimeError(f"input {context.name} has no upstream step output to load")
        key = self._key(upstream.get_identifier())
        with contextlib.closing(self._client()) as client:
            data = client.get(key)
        if data is None:
            raise RuntimeError(f"step output {key} is not in Redis (expired or never written)")
        # Written by our own steps into the deployment's Redis: trusted like Dagster's own
        # filesystem IO manager's pickles.
        return pickle.loads(data)


def distributed_resources(settings: Settings) -> dict[str, dg.ConfigurableIOManager]:
    """The IO manager Celery steps need (outputs readable from every host); none by default."""
    if not distributed(settings) or settings.celery_backend is None:
        return {}
    url = _env_or_value("SWIFTBOLT_CELERY_BACKEND", settings.celery_backend)
    return {
        "io_manager": RedisStepOutputs(
            url=dg.EnvVar("SWIFTBOLT_CELERY_BACKEND") if isinstance(url, dict) else url
        )
    }


def worker_app(settings: Settings) -> Celery:
    """The Celery app of `swiftbolt worker`: Dagster's step task, on the runs' broker,
    backend and queue, with the same settings as the runs' executor."""
    if settings.celery_broker is None or settings.celery_backend is None:
        raise InvalidInput(
            "INVALID_CONFIG",
            "a worker needs SWIFTBOLT_CELERY_BROKER and SWIFTBOLT_CELERY_BACKEND",
        )
    if settings.database_url is None:
        raise InvalidInput(
            "INVALID_CONFIG", "a worker needs DATABASE_URL: the PostgreSQL every host shares"
        )
    from dagster._core.execution.retries import RetryMode
    from dagster_celery.executor import CeleryExecutor
    from dagster_celery.make_app import make_app
    from dagster_celery.tasks import create_task

    executor = CeleryExecutor(
        retries=RetryMode(RetryMode.DISABLED),
        broker=settings.celery_broker,
        backend=settings.celery_backend,
        config_source=celery_options(),
    )
    app = make_app(executor.app_args())
    create_task(app)
    return app


@contextlib.contextmanager
def open_shared_instance(settings: Settings) -> Iterator[dg.DagsterInstance]:
    """The Dagster instance of distributed runs. Its reference travels to every worker with
    each step, so it names no database: each host's storage finds the shared PostgreSQL from
    its own DATABASE_URL (one host may reach it by another address than the next)."""
    ref = InstanceRef.from_dir(str(dagster_home(settings)))
    with dg.DagsterInstance.from_ref(ref) as instance:
        instance.optimize_for_webserver(statement_timeout=0, pool_recycle=3600, max_overflow=10)
        yield instance


def max_concurrent_runs(instance: dg.DagsterInstance) -> int:
    """The instance's run cap (dagster.yaml `concurrency: runs:`), which the daemon's queue
    applies too."""
    queue = instance.get_concurrency_config().run_queue_config
    return max(1, queue.max_concurrent_runs) if queue else 1


def run_pool(parallel: int) -> ProcessPoolExecutor:
    """Processes to orchestrate distributed runs side by side. Not threads: Dagster
    reconfigures Python logging as each run starts, which deadlocks with another run's
    thread logging at that moment. Spawned, not forked, from a process holding connections."""
    return ProcessPoolExecutor(max_workers=parallel, mp_context=get_context("spawn"))


def execute_range(
    settings: Settings,
    *,
    symbols: Sequence[str],
    days: Sequence[date],
    selection: Sequence[str],
    run_config: Mapping[str, Any] | None = None,
    log_level: str = "INFO",
) -> RunOutcome:
    """One run of the bar job over `days` of `symbols` (neighbours in the symbol partitions'
    order), orchestrated here, its steps executed by the workers."""
    from celery.exceptions import DuplicateTaskNameWarning

    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    warnings.filterwarnings("ignore", category=dg.PreviewWarning)
    # dagster-celery declares its step task anew for every step it sends; Celery warns each
    # time that the name is taken (by the same task).
    warnings.filterwarnings("ignore", category=DuplicateTaskNameWarning)
    job = ReconstructableRepository.for_module(
        CODE_LOCATION_MODULE, "defs"
    ).get_reconstructable_job(BARS_JOB)
    with (
        open_shared_instance(settings) as instance,
        dg.execute_job(
            job,
            instance,
            run_config={
                **(run_config or {}),
                "loggers": {"console": {"config": {"log_level": log_level}}},
            },
            tags={
                **range_tags(symbols[0], symbols[-1], days[0], days[-1]),
                **symbol_tags(symbols),
            },
            asset_selection=[dg.AssetKey(name) for name in selection],
        ) as result,
    ):
        return run_outcome(result, symbols, len(symbols) * len(days))
