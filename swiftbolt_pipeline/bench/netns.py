"""Several worker hosts on one machine, for the multi-host test and bench: each host is a
Linux network namespace (root only, `ip netns`) joined to this one by a veth pair, with its
own loopback and address. The services (PostgreSQL, RabbitMQ, Redis, the emulator) listen on
this machine's loopback only, so a TCP forwarder on each veth's address here relays a host's
connections to them: to the services they come from 127.0.0.1, which RabbitMQ's `guest` user
requires. A host runs `swiftbolt worker` with its own environment naming the services by that
address, and is killed by SIGKILL to every process in its namespace.

Each RabbitMQ user of this harness gets its own virtual host (`rabbitmqctl`), so its steps
never mix with anyone else's on the same broker."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

SWIFTBOLT = str(Path(sys.executable).parent / "swiftbolt")


def available() -> str | None:
    """Why hosts cannot be simulated here (not root, no `ip`, no `rabbitmqctl`), or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "rabbitmqctl"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


def _run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=60)


def rehost(url: str, host: str) -> str:
    """`url` with its host replaced (user, password, port and path kept)."""
    parts = urlsplit(url)
    userinfo, _, _ = parts.netloc.rpartition("@")
    port = f":{parts.port}" if parts.port else ""
    netloc = f"{userinfo}@{host}{port}" if userinfo else f"{host}{port}"
    return urlunsplit(parts._replace(netloc=netloc))


def url_port(url: str, default: int) -> int:
    return urlsplit(url).port or default


@contextlib.contextmanager
def rabbitmq_vhost(prefix: str = "swiftbolt") -> Iterator[str]:
    """A fresh RabbitMQ virtual host `guest` may use; deleted (queues and all) afterwards."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    _run("rabbitmqctl", "-q", "add_vhost", name)
    try:
        _run("rabbitmqctl", "-q", "set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        yield name
    finally:
        with contextlib.suppress(subprocess.SubprocessError):
            _run("rabbitmqctl", "-q", "delete_vhost", name)


class Forwarder:
    """Relays TCP connections accepted on (address, port) to 127.0.0.1:port, for each port;
    a connection closed on either side is closed on the other (a killed host's broker
    connection ends, so the broker hands its unacknowledged steps to another worker)."""

    def __init__(self, address: str, ports: Sequence[int]) -> None:
        self.address = address
        self.ports = list(ports)
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._serve, name=f"fwd-{address}", daemon=True)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    def _handler(
        self, port: int
    ) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                writer.close()
                return
            # Cancelled when the forwarder stops: end quietly, both sides closed by the pipes.
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

        return handle

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            servers = [
                self._loop.run_until_complete(
                    asyncio.start_server(self._handler(port), self.address, port)
                )
                for port in self.ports
            ]
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()
        for server in servers:
            server.close()
        pending = asyncio.all_tasks(self._loop)
        for task in pending:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self._loop.close()

    def __enter__(self) -> Forwarder:
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@dataclass
class Host:
    """One simulated machine: namespace `name`, reaching this one at `gateway`."""

    name: str
    gateway: str
    address: str
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def pids(self) -> list[int]:
        out = subprocess.run(
            ["ip", "netns", "pids", self.name], capture_output=True, text=True, check=False
        ).stdout
        return [int(p) for p in out.split()]

    def kill(self) -> None:
        """SIGKILL every process in the namespace, as if the machine lost power."""
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for proc in self.workers:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)

    def start_worker(
        self, env: Mapping[str, str], log: Path, *, concurrency: int = 1
    ) -> subprocess.Popen[bytes]:
        """`swiftbolt worker` inside the namespace, output to `log`."""
        with log.open("ab") as out:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", self.name, SWIFTBOLT, "worker", "--name", self.name,
                 "--concurrency", str(concurrency)],
                env=dict(env), stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        self.workers.append(proc)
        return proc


def worker_env(base: Mapping[str, str], host: Host, *, home: Path) -> dict[str, str]:
    """`base` (this machine's environment for the pipeline) as seen from `host`: every service
    URL names the host's gateway instead of 127.0.0.1, and the host has its own home."""
    env = dict(base)
    for name in (
        "DATABASE_URL",
        "POLYGON_BASE_URL",
        "TRADIER_BASE_URL",
        "ALPACA_BASE_URL",
        "SWIFTBOLT_CELERY_BROKER",
        "SWIFTBOLT_CELERY_BACKEND",
    ):
        if env.get(name):
            env[name] = rehost(env[name], host.gateway)
    env["SWIFTBOLT_HOME"] = str(home)
    return env


@contextlib.contextmanager
def hosts(count: int, ports: Sequence[int]) -> Iterator[list[Host]]:
    """`count` namespaces with a forwarder for `ports` each; on exit (even after a failure)
    every process in them is killed and the namespaces and links are deleted."""
    tag = f"{os.getpid() % 10000:04d}{uuid.uuid4().hex[:2]}"
    subnet = 16 + int(uuid.uuid4().hex[:4], 16) % 200  # 10.<subnet>.<host>.0/30
    made: list[Host] = []
    with contextlib.ExitStack() as stack:
        try:
            for index in range(1, count + 1):
                host = Host(f"sb{tag}h{index}", f"10.{subnet}.{index}.1", f"10.{subnet}.{index}.2")
                outside, inside = f"sb{tag}a{index}", f"sb{tag}b{index}"
                _run("ip", "netns", "add", host.name)
                made.append(host)
                _run("ip", "link", "add", outside, "type", "veth", "peer", "name", inside)
                _run("ip", "link", "set", inside, "netns", host.name)
                _run("ip", "addr", "add", f"{host.gateway}/30", "dev", outside)
                _run("ip", "link", "set", outside, "up")
                for args in (
                    ("addr", "add", f"{host.address}/30", "dev", inside),
                    ("link", "set", inside, "up"),
                    ("link", "set", "lo", "up"),
                ):
                    _run("ip", "netns", "exec", host.name, "ip", *args)
                stack.enter_context(Forwarder(host.gateway, ports))
            yield made
        finally:
            for host in made:
                host.kill()
                # Deleting the namespace deletes its end of the veth pair, and so the pair.
                with contextlib.suppress(subprocess.SubprocessError):
                    _run("ip", "netns", "delete", host.name)


def wait_for(
    predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.2
) -> None:
    """Poll `predicate` until true; TimeoutError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)
