"""Where steps execute: in process by default; Celery (every host's `swiftbolt worker`) with
SWIFTBOLT_EXECUTOR=celery, configured once from the environment, its URLs never stored."""

from __future__ import annotations

import socket
import uuid

import dagster as dg
import pytest
from dagster._serdes import serialize_value

from swiftbolt_pipeline.bench.netns import rehost
from swiftbolt_pipeline.config import Settings
from swiftbolt_pipeline.core.models import InvalidInput
from swiftbolt_pipeline.defs.build import build_definitions
from swiftbolt_pipeline.defs.jobs import BARS_JOB
from swiftbolt_pipeline.services.executor import RedisStepOutputs
from swiftbolt_pipeline_tests.e2e.cli_runner import run_cli

BROKER = "amqp://swift:s3cret-broker@10.0.0.5:5672/prod"
BACKEND = "redis://:s3cret-redis@10.0.0.5:6379/0"
BASE = {"DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/x"}


def _celery_env() -> dict[str, str]:
    return {
        **BASE,
        "SWIFTBOLT_EXECUTOR": "celery",
        "SWIFTBOLT_CELERY_BROKER": BROKER,
        "SWIFTBOLT_CELERY_BACKEND": BACKEND,
    }


def test_the_default_stays_in_process() -> None:
    settings = Settings.from_env(BASE)
    assert settings.executor == "in_process"
    defs = build_definitions(settings)
    assert defs.resolve_job_def(BARS_JOB).executor_def is dg.in_process_executor
    assert "io_manager" not in (defs.resources or {})


def test_celery_executes_the_bar_job_with_urls_resolved_on_each_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in _celery_env().items():
        monkeypatch.setenv(name, value)
    defs = build_definitions(Settings.from_env())
    job = defs.resolve_job_def(BARS_JOB)
    assert job.executor_def.name == "celery"
    # The outputs steps hand each other go through Redis, which every host reaches.
    io_manager = (defs.resources or {})["io_manager"]
    assert isinstance(io_manager, RedisStepOutputs)
    # Neither URL (both hold a password) is in the job's snapshot, which the instance stores:
    # each process that runs or orchestrates a step reads its own environment.
    assert "s3cret" not in serialize_value(job.get_job_snapshot())


@pytest.mark.parametrize(
    ("env", "needs"),
    [
        ({"SWIFTBOLT_EXECUTOR": "celery", **BASE}, "SWIFTBOLT_CELERY_BROKER"),
        ({"SWIFTBOLT_EXECUTOR": "celery", "SWIFTBOLT_CELERY_BROKER": BROKER, **BASE},
         "SWIFTBOLT_CELERY_BACKEND"),
        ({"SWIFTBOLT_EXECUTOR": "celery", "SWIFTBOLT_CELERY_BROKER": BROKER,
          "SWIFTBOLT_CELERY_BACKEND": BACKEND}, "DATABASE_URL"),
        ({**_celery_env(), "SWIFTBOLT_CELERY_BACKEND": "rpc://s3cret-redis@host/"}, "redis://"),
        ({"SWIFTBOLT_EXECUTOR": "kubernetes"}, "in_process or celery"),
    ],
)  # fmt: skip
def test_bad_executor_settings_are_refused_without_repeating_secrets(
    env: dict[str, str], needs: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        Settings.from_env(env)
    assert caught.value.code == "INVALID_CONFIG"
    assert needs in caught.value.message
    assert "s3cret" not in caught.value.message


def _redis_up() -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", 6379)) == 0


@pytest.mark.skipif(not _redis_up(), reason="no Redis on 127.0.0.1:6379")
def test_step_outputs_go_through_redis_and_expire() -> None:
    import redis

    outputs = RedisStepOutputs(url="redis://127.0.0.1:6379/0", ttl_s=60)
    run_id = f"test-{uuid.uuid4()}"
    value = {"plan": [1, 2, 3], "symbol": "AAPL"}
    out = dg.build_output_context(step_key="m15_bars.m15_plan", name="plan", run_id=run_id)
    outputs.handle_output(out, value)
    upstream = dg.build_output_context(step_key="m15_bars.m15_plan", name="plan", run_id=run_id)
    loaded = outputs.load_input(dg.build_input_context(upstream_output=upstream))
    assert loaded == value
    client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    key = f"swiftbolt:step-output:{run_id}/m15_bars.m15_plan/plan"
    assert 0 < int(client.ttl(key)) <= 60  # type: ignore[arg-type]
    client.delete(key)
    with pytest.raises(RuntimeError, match="not in Redis"):
        outputs.load_input(dg.build_input_context(upstream_output=upstream))


def test_a_worker_without_a_broker_says_what_is_missing(tmp_path: object) -> None:
    result = run_cli("worker", env={**BASE, "SWIFTBOLT_HOME": str(tmp_path)})
    assert result.returncode == 2
    assert "SWIFTBOLT_CELERY_BROKER" in result.stderr


def test_a_host_sees_the_services_at_its_gateway() -> None:
    assert rehost(BROKER, "10.9.1.1") == "amqp://swift:s3cret-broker@10.9.1.1:5672/prod"
    assert rehost("http://127.0.0.1:8089", "10.9.1.1") == "http://10.9.1.1:8089"
    assert rehost("redis://127.0.0.1:6379/0", "10.9.1.1") == "redis://10.9.1.1:6379/0"
