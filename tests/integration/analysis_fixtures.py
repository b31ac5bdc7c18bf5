"""Real processes for the analysis tests: Prometheus (the data plane's build of upstream
v2.42.0, hack/dataplane/build.sh) and Gin services.

Everything listens on 127.0.0.1 and every loop is bounded. No Kubernetes cluster is needed:
Prometheus scrapes the Gin processes directly, with the labels (namespace, rollout, track,
revision) that the pod relabeling gives them in a cluster set on the static targets.

Imported by the analysis test modules and the benchmark; tests/integration/conftest.py (the
cluster's fixtures) is not involved.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
GIN_BINARY = REPO / "app" / "bin" / "gin-demo"
DATAPLANE_DIR = REPO / "hack" / "dataplane"
LOOPBACK = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def wait_until(what: str, probe: Callable[[], Any], timeout: float, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback, no proxy


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with _DIRECT.open(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()
    except (OSError, http.client.HTTPException):
        return 0, b""


# --- binaries ------------------------------------------------------------------------------------


def dataplane_path(variable: str) -> Path:
    """A path that hack/dataplane/lib.sh defines (it pins the versions)."""
    lib = DATAPLANE_DIR / "lib.sh"
    out = subprocess.run(
        ["bash", "-c", f'source "$0" && printf %s "${variable}"', str(lib)],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0 or not out.stdout:
        pytest.fail(
            f"cannot read {variable} from {lib} (exit {out.returncode}): "
            f"{out.stderr.strip()[-500:]}",
            pytrace=False,
        )
    return Path(out.stdout)


def prometheus_binary() -> str:
    """$PROMETHEUS_BIN if set, else the data plane's Prometheus (hack/dataplane/lib.sh's
    BIN_PROMETHEUS: upstream v2.42.0 built from the Go module proxy), built with
    `hack/dataplane/build.sh prometheus` when missing (a cold build takes minutes)."""
    override = os.environ.get("PROMETHEUS_BIN")
    if override:
        found = shutil.which(override)
        if not found:
            pytest.fail(f"PROMETHEUS_BIN={override!r} is not an executable", pytrace=False)
        return found
    binary = dataplane_path("BIN_PROMETHEUS") / "prometheus"
    if not os.access(binary, os.X_OK):
        build = [str(DATAPLANE_DIR / "build.sh"), "prometheus"]
        try:
            proc = subprocess.run(build, capture_output=True, text=True, timeout=3600, check=False)
        except subprocess.TimeoutExpired as err:
            out = err.stderr or b""
            tail = out.decode(errors="replace") if isinstance(out, bytes) else out
            pytest.fail(
                f"{' '.join(build)} timed out after 3600s:\n{tail.strip()[-2000:]}",
                pytrace=False,
            )
        if proc.returncode != 0 or not os.access(binary, os.X_OK):
            pytest.fail(
                f"{binary} is missing and hack/dataplane/build.sh prometheus failed "
                f"(exit {proc.returncode}):\n{(proc.stderr or proc.stdout).strip()[-2000:]}",
                pytrace=False,
            )
    return str(binary)


def gin_binary() -> Path:
    """app/bin/gin-demo, built with `make -C app build` when missing."""
    if not GIN_BINARY.exists():
        proc = subprocess.run(
            ["make", "-C", str(REPO / "app"), "build"],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        if proc.returncode != 0 or not GIN_BINARY.exists():
            pytest.fail(
                f"cannot build {GIN_BINARY} (make -C app build, exit {proc.returncode}): "
                f"{(proc.stderr or proc.stdout).strip()[-500:]}",
                pytrace=False,
            )
    return GIN_BINARY


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGCONT)  # in case a test left it stopped
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)


# --- the Gin service -----------------------------------------------------------------------------


@dataclass
class Gin:
    """One Gin process standing in for one pod of a track."""

    name: str
    labels: dict[str, str]  # namespace, rollout, track, revision (as relabeled in a cluster)
    env: dict[str, str]
    log: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def start(self, timeout: float = 15.0) -> Gin:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LISTEN_ADDR": self.address,
            "POD_NAME": self.name,
            **self.env,
        }
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(gin_binary())], env=env, stdout=log, stderr=subprocess.STDOUT
            )

        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited {self.proc.returncode}: see {self.log}")
            return http_get(f"http://{self.address}/readyz", timeout=1)[0] == 200

        wait_until(f"{self.name} ready", ready, timeout)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None

    def restart(self, **env: str) -> None:
        self.stop()
        self.env.update(env)
        self.start()


# --- Prometheus ----------------------------------------------------------------------------------


def scrape_config(targets: Sequence[Gin], interval: str = "1s") -> dict[str, Any]:
    return {
        "global": {"scrape_interval": interval, "scrape_timeout": interval},
        "scrape_configs": [
            {
                "job_name": "gin",
                "static_configs": [
                    {"targets": [g.address], "labels": {**g.labels, "pod": g.name}} for g in targets
                ],
            }
        ],
    }


@dataclass
class PrometheusServer:
    """A real Prometheus on 127.0.0.1 with its own config and data directory."""

    workdir: Path
    config: Mapping[str, Any]
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self, timeout: float = 60.0) -> PrometheusServer:
        binary = prometheus_binary()
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "prometheus.yml"
        config.write_text(json.dumps(self.config, indent=2))  # JSON is YAML
        log = (self.workdir / "prometheus.log").open("ab")
        self.proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address={LOOPBACK}:{self.port}",
                "--storage.tsdb.retention.time=1h",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"prometheus exited {self.proc.returncode}: {self.workdir}")
            return http_get(f"{self.url}/-/ready", timeout=1)[0] == 200

        wait_until("prometheus ready", ready, timeout)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None

    def freeze(self) -> None:
        """SIGSTOP: the port still accepts connections, nothing answers (a hung server)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def api(self, path: str) -> Any:
        status, body = http_get(f"{self.url}{path}", timeout=5)
        assert status == 200, f"{path}: HTTP {status} {body[:300]!r}"
        return json.loads(body)["data"]

    def wait_targets_up(self, count: int, timeout: float = 30.0) -> None:
        def all_up() -> bool:
            active = self.api("/api/v1/targets?state=active")["activeTargets"]
            return sum(t["health"] == "up" for t in active) >= count

        wait_until(f"{count} targets up", all_up, timeout, interval=0.25)


# --- load ----------------------------------------------------------------------------------------


@dataclass
class LoadResult:
    codes: Counter[int] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    started: float = 0.0  # time.time()
    ended: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def total(self) -> int:
        return sum(self.codes.values())

    @property
    def error_rate(self) -> float:
        return sum(n for c, n in self.codes.items() if c >= 500) / max(self.total, 1)


def _worker(
    address: str, stop_at: float, every: float, budget: Iterator[int], out: LoadResult
) -> None:
    host, port = address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    next_at = time.monotonic()
    try:
        while time.monotonic() < stop_at and next(budget, None) is not None:
            next_at += every
            started = time.monotonic()
            try:
                conn.request("GET", "/")
                resp = conn.getresponse()
                resp.read()
                code = resp.status
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection(host, int(port), timeout=10)
                code = 0
            with out.lock:
                out.codes[code] += 1
                out.latencies.append(time.monotonic() - started)
            pause = next_at - time.monotonic()
            if pause > 0:
                time.sleep(min(pause, 1.0))
    finally:
        conn.close()


def load(
    address: str,
    *,
    seconds: float,
    rate: float,
    workers: int = 8,
    max_requests: int = 20_000,
    out: LoadResult | None = None,
) -> LoadResult:
    """GET / at about ``rate`` per second for ``seconds`` (never more than ``max_requests``)."""
    out = out or LoadResult()
    budget = iter(range(max_requests))  # next() on a range iterator is atomic under the GIL
    stop_at = time.monotonic() + min(seconds, 300)
    out.started = time.time()
    threads = [
        threading.Thread(
            target=_worker, args=(address, stop_at, workers / rate, budget, out), daemon=True
        )
        for _ in range(workers)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + 30)
    out.ended = time.time()
    return out


@contextlib.contextmanager
def background_load(
    address: str, *, seconds: float, rate: float, workers: int = 8
) -> Iterator[LoadResult]:
    """Load in a thread while the body runs; joined (bounded by ``seconds``) on exit."""
    out = LoadResult()
    thread = threading.Thread(
        target=load,
        args=(address,),
        kwargs={"seconds": seconds, "rate": rate, "workers": workers, "out": out},
        daemon=True,
    )
    thread.start()
    try:
        yield out
    finally:
        thread.join(timeout=seconds + 60)
