#!/usr/bin/env python3
"""Process runner: real processes behind kwok's simulated pods.

kwok makes pods Running and Ready but runs nothing. This runner watches pods in
all namespaces and, for each container of a pod whose containers run (see
should_run: from kwok's pod-create Stage on, i.e. before Ready, as on a real
node; --start-on=running waits for phase Running) and whose image repository
maps to a locally built binary (``kanary/gin-demo`` -> ``app/bin/gin-demo``),
starts that binary bound to the pod IP and the container port, with the pod's
env (plus ``APP_VERSION`` from the image tag unless the env sets it). It stops
the process (SIGTERM, then SIGKILL after the pod's grace period, at most 30 s)
when the pod is deleted, gets a deletionTimestamp or ends (Succeeded/Failed), and
restarts a process that exits while its pod still runs (with a backoff,
like the kubelet).

Readiness: once kwok has turned a pod Running (its pod-ready timer), the runner
probes the readinessProbe (httpGet or tcpSocket) of each container it runs, with
the kubelet's rules (periodSeconds, timeoutSeconds, initialDelaySeconds,
failureThreshold consecutive failures -> not ready, successThreshold
consecutive successes -> ready). When the result settles to a new value it
sets the pod annotation ``kanary.dev/readiness-probe`` to ``failure`` or
``success``; two kwok Stages (hack/cluster/stages/pod-readiness-probe.yaml)
turn that into the Ready/ContainersReady conditions and containerStatuses.
That annotation is the runner's only write to the API: kwok owns pod status.

It must run inside the cluster's network namespace (pod IPs are local there).
Per-pod logs: ``LOG_DIR/pods/<namespace>_<pod>_<container>.log``; the pid of
each process: ``PID_DIR/pods/<namespace>_<pod>_<container>.pid`` (down.sh uses
them to clean up after a runner that was killed). Each process also gets
SIGTERM when the runner dies (``setpriv --pdeathsig``).

    runner.py --kubeconfig KUBECONFIG --log-dir DIR --pid-dir DIR \\
              --map kanary/gin-demo=/path/to/gin-demo
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import ipaddress
import json
import logging
import os
import queue
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch
from kubernetes.client import ApiException

log = logging.getLogger("pod-runner")

Obj = dict[str, Any]

WATCH_TIMEOUT_S = 30  # each watch call ends after this; then it resumes
TICK_S = 0.5  # housekeeping period of the main loop
MAX_GRACE_S = 30.0
RESTART_BACKOFF_S = (1.0, 2.0, 4.0, 8.0, 10.0)
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")
# Pod annotation the runner sets to the settled result of the readiness probe;
# kwok Stages (hack/cluster/stages/pod-readiness-probe.yaml) match it.
PROBE_ANNOTATION = "kanary.dev/readiness-probe"
PROBE_SUCCESS, PROBE_FAILURE = "success", "failure"


# ----------------------------------------------------------------- images ---
def split_image(image: str) -> tuple[str, str]:
    """(repository, tag) of an image reference; tag "latest" when absent.
    A digest is dropped; a leading docker.io/ (and docker.io/library/) too."""
    ref = image.split("@", 1)[0]
    last = ref.rsplit("/", 1)[-1]
    if ":" in last:
        repo, tag = ref.rsplit(":", 1)
    else:
        repo, tag = ref, "latest"
    for prefix in ("docker.io/library/", "docker.io/", "index.docker.io/"):
        if repo.startswith(prefix):
            repo = repo[len(prefix) :]
            break
    return repo, tag


# -------------------------------------------------------------------- env ---
def _field_value(pod: Obj, path: str) -> str:
    meta: Obj = pod.get("metadata") or {}
    spec: Obj = pod.get("spec") or {}
    st: Obj = pod.get("status") or {}
    m = re.fullmatch(r"metadata\.(labels|annotations)\['([^']*)'\]", path)
    if m:
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    simple: dict[str, Any] = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.podIP": st.get("podIP"),
        "status.hostIP": st.get("hostIP"),
        "status.podIPs": ",".join(p.get("ip", "") for p in st.get("podIPs") or []),
        "status.hostIPs": ",".join(p.get("ip", "") for p in st.get("hostIPs") or []),
    }
    v = simple.get(path)
    return "" if v is None else str(v)


def _expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: defined variables are replaced, $$ is a
    literal $, undefined references stay as written."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env[name] if name in env else m.group(0)

    return VAR_REF.sub(sub, value)


class EnvSource:
    """Reads ConfigMaps and Secrets for env/envFrom (read only)."""

    def __init__(self, core: Any) -> None:
        self.core = core

    def _data(self, kind: str, namespace: str, name: str) -> dict[str, str] | None:
        try:
            if kind == "configmap":
                cm = self.core.read_namespaced_config_map(name, namespace)
                return dict(cm.data or {})
            sec = self.core.read_namespaced_secret(name, namespace)
            return {k: base64.b64decode(v).decode() for k, v in (sec.data or {}).items()}
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def key(self, kind: str, namespace: str, ref: Obj) -> str | None:
        data = self._data(kind, namespace, str(ref.get("name", "")))
        if data is None:
            return None
        return data.get(str(ref.get("key", "")))

    def all(self, kind: str, namespace: str, name: str) -> dict[str, str]:
        return self._data(kind, namespace, name) or {}


def container_env(pod: Obj, container: Obj, source: EnvSource | None) -> dict[str, str]:
    """The env the container would get from the pod spec (envFrom, then env,
    with fieldRef / configMapKeyRef / secretKeyRef and $(VAR) expansion)."""
    ns = str((pod.get("metadata") or {}).get("namespace", ""))
    env: dict[str, str] = {}
    for src in container.get("envFrom") or []:
        prefix = str(src.get("prefix") or "")
        for kind, key in (("configmap", "configMapRef"), ("secret", "secretRef")):
            ref = src.get(key)
            if ref and source is not None:
                for k, v in source.all(kind, ns, str(ref.get("name", ""))).items():
                    env[prefix + k] = v
    for item in container.get("env") or []:
        name = str(item["name"])
        if "value" in item and item["value"] is not None:
            env[name] = _expand(str(item["value"]), env)
            continue
        vf: Obj = item.get("valueFrom") or {}
        if "fieldRef" in vf:
            env[name] = _field_value(pod, str(vf["fieldRef"].get("fieldPath", "")))
        elif "configMapKeyRef" in vf or "secretKeyRef" in vf:
            kind = "configmap" if "configMapKeyRef" in vf else "secret"
            ref = vf.get("configMapKeyRef") or vf.get("secretKeyRef") or {}
            found = source.key(kind, ns, ref) if source is not None else None
            if found is not None:
                env[name] = found
            elif not ref.get("optional"):
                log.warning("%s/%s: env %s: %s not found", ns, _name(pod), name, ref)
        elif "value" in item:
            env[name] = ""
        else:  # resourceFieldRef: nothing meaningful without a real kubelet
            log.info("%s/%s: env %s: unsupported valueFrom, skipped", ns, _name(pod), name)
    return env


def _name(pod: Obj) -> str:
    return str((pod.get("metadata") or {}).get("name", ""))


def container_port(container: Obj, env: dict[str, str]) -> int:
    """The port the process listens on: LISTEN_ADDR's or PORT from the env if
    set, else the container's first TCP containerPort, else 8080."""
    if "LISTEN_ADDR" in env and ":" in env["LISTEN_ADDR"]:
        with contextlib.suppress(ValueError):
            return int(env["LISTEN_ADDR"].rsplit(":", 1)[1])
    if "PORT" in env:
        with contextlib.suppress(ValueError):
            return int(env["PORT"])
    for p in container.get("ports") or []:
        if str(p.get("protocol") or "TCP") == "TCP" and p.get("containerPort"):
            return int(p["containerPort"])
    return 8080


# ------------------------------------------------------------ readiness ---
@dataclass(frozen=True)
class Probe:
    """A container's readinessProbe as the kubelet would run it (its defaults)."""

    kind: str  # "http" or "tcp"
    host: str
    port: int
    path: str = "/"
    scheme: str = "HTTP"
    headers: tuple[tuple[str, str], ...] = ()
    initial_delay_s: float = 0.0
    period_s: float = 10.0
    timeout_s: float = 1.0
    success_threshold: int = 1
    failure_threshold: int = 3

    def target(self) -> str:
        host = self.host if ":" not in self.host else f"[{self.host}]"
        if self.kind == "tcp":
            return f"tcp://{host}:{self.port}"
        return f"{self.scheme.lower()}://{host}:{self.port}{self.path}"


def _probe_port(port: Any, container: Obj) -> int | None:
    """A probe's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    if isinstance(port, str):
        if port.isdigit():
            return int(port)
        for p in container.get("ports") or []:
            if p.get("name") == port and p.get("containerPort"):
                return int(p["containerPort"])
    return None


def readiness_probe(container: Obj, pod_ip: str) -> Probe | None:
    """The container's readinessProbe (httpGet or tcpSocket), with Kubernetes'
    defaults for what is not set; None without one, for exec/grpc probes (not
    run here) and for a named port the container does not declare."""
    rp: Obj = container.get("readinessProbe") or {}

    def num(key: str, default: int, least: int) -> int:
        v = rp.get(key)
        return int(v) if isinstance(v, int) and v >= least else default

    timing: dict[str, Any] = {
        "initial_delay_s": float(num("initialDelaySeconds", 0, 0)),
        "period_s": float(num("periodSeconds", 10, 1)),
        "timeout_s": float(num("timeoutSeconds", 1, 1)),
        "success_threshold": num("successThreshold", 1, 1),
        "failure_threshold": num("failureThreshold", 3, 1),
    }
    if "httpGet" in rp:
        hg: Obj = rp["httpGet"] or {}
        port = _probe_port(hg.get("port"), container)
        if port is None:
            return None
        path = str(hg.get("path") or "/")
        return Probe(
            kind="http",
            host=str(hg.get("host") or pod_ip),
            port=port,
            path=path if path.startswith("/") else f"/{path}",
            scheme=str(hg.get("scheme") or "HTTP").upper(),
            headers=tuple(
                (str(h["name"]), str(h.get("value", ""))) for h in hg.get("httpHeaders") or []
            ),
            **timing,
        )
    if "tcpSocket" in rp:
        ts: Obj = rp["tcpSocket"] or {}
        port = _probe_port(ts.get("port"), container)
        if port is None:
            return None
        return Probe(kind="tcp", host=str(ts.get("host") or pod_ip), port=port, **timing)
    return None


@dataclass
class ProbeState:
    """The kubelet's result rule for one probe: the state flips to ready after
    success_threshold consecutive successes and to not ready after
    failure_threshold consecutive failures; anything shorter changes nothing.
    It starts ready: the runner begins probing once kwok made the pod Ready."""

    success_threshold: int = 1
    failure_threshold: int = 3
    ready: bool = True
    last: bool | None = None  # the previous result
    run: int = 0  # how many results in a row equal `last`

    def observe(self, ok: bool) -> bool:
        """Record one probe result; True if the state changed."""
        if ok == self.last:
            self.run += 1
        else:
            self.last, self.run = ok, 1
        need = self.success_threshold if ok else self.failure_threshold
        if self.run < need or ok == self.ready:
            return False
        self.ready = ok
        return True


def run_probe(probe: Probe) -> bool:
    """One probe: TCP connect, or an HTTP GET answered with 200-399 (no
    redirect following, TLS not verified, as the kubelet), within timeout_s."""
    try:
        if probe.kind == "tcp":
            with socket.create_connection((probe.host, probe.port), timeout=probe.timeout_s):
                return True
        conn: http.client.HTTPConnection
        if probe.scheme == "HTTPS":
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            conn = http.client.HTTPSConnection(
                probe.host, probe.port, timeout=probe.timeout_s, context=ctx
            )
        else:
            conn = http.client.HTTPConnection(probe.host, probe.port, timeout=probe.timeout_s)
        try:
            headers = {"User-Agent": "kube-probe/kanary-pod-runner", "Accept": "*/*"}
            headers.update(probe.headers)
            conn.request("GET", probe.path, headers=headers)
            resp = conn.getresponse()
            resp.read(64 * 1024)
            return 200 <= resp.status < 400
        finally:
            conn.close()
    except (OSError, http.client.HTTPException):
        return False


Publish = Callable[[str, str, str, str], None]  # (namespace, pod, uid, value)


class Prober:
    """Probes the readinessProbes of one pod's run containers in a thread
    (each on its own period) and publishes the pod's readiness (all of them
    ready) as the PROBE_ANNOTATION when it differs from what is published. A
    publish that fails is retried on the next probe."""

    def __init__(
        self,
        namespace: str,
        pod: str,
        uid: str,
        probes: dict[str, Probe],  # by container
        published: str | None,  # the pod's annotation now
        publish: Publish | None,
    ) -> None:
        self.namespace, self.pod, self.uid = namespace, pod, uid
        self.probes = probes
        ready = published != PROBE_FAILURE
        self.states = {
            c: ProbeState(p.success_threshold, p.failure_threshold, ready=ready)
            for c, p in probes.items()
        }
        self.published = published
        self.publish = publish
        self.stop = threading.Event()
        self.thread = threading.Thread(
            target=self.run, name=f"probe-{namespace}/{pod}", daemon=True
        )

    def start(self) -> None:
        self.thread.start()

    def ready(self) -> bool:
        return all(st.ready for st in self.states.values())

    def run(self) -> None:
        now = time.monotonic()
        due = {c: now + p.initial_delay_s for c, p in self.probes.items()}
        while not self.stop.wait(max(0.0, min(due.values()) - time.monotonic())):
            for c, probe in self.probes.items():
                if due[c] > time.monotonic():
                    continue
                due[c] = time.monotonic() + probe.period_s
                st = self.states[c]
                if st.observe(run_probe(probe)):
                    log.info(
                        "%s/%s: container %s: readiness probe %s, %d in a row (%s): %s",
                        self.namespace,
                        self.pod,
                        c,
                        "succeeded" if st.ready else "failed",
                        st.run,
                        probe.target(),
                        "ready" if st.ready else "not ready",
                    )
            self._publish()

    def _publish(self) -> None:
        want = PROBE_SUCCESS if self.ready() else PROBE_FAILURE
        if want == (self.published or PROBE_SUCCESS) or self.publish is None or self.stop.is_set():
            return  # nothing to say (no annotation reads as ready)
        try:
            self.publish(self.namespace, self.pod, self.uid, want)
        except Exception as e:
            log.warning(
                "%s/%s: cannot set %s=%s: %s", self.namespace, self.pod, PROBE_ANNOTATION, want, e
            )
            return
        self.published = want
        log.info("%s/%s: %s=%s", self.namespace, self.pod, PROBE_ANNOTATION, want)


# ---------------------------------------------------------------- desired ---
@dataclass(frozen=True)
class Want:
    """One process that should run: a container of a Running pod."""

    key: str  # <namespace>_<pod>_<container> (file names)
    uid: str
    binary: str
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    listen: str
    grace_s: float
    container: str = ""
    probe: Probe | None = None  # the container's readinessProbe, if the runner can run it


def should_run(pod: Obj, start_on: str = "created") -> bool:
    """Whether the pod's containers run. "created" (default): from the moment
    kwok gives the pod its IP (its pod-create Stage, which also records the
    "Created container" event) while it is Pending or Running with its init
    containers done, as a kubelet starts containers before the readiness probe
    passes, so the process is up when kwok turns the pod Ready and a pod that
    never turns Ready still has a live process. "running": only in phase
    Running. Never once deletion started, nor in phase Succeeded/Failed."""
    meta: Obj = pod.get("metadata") or {}
    st: Obj = pod.get("status") or {}
    if meta.get("deletionTimestamp") is not None or not st.get("podIP"):
        return False
    phase = st.get("phase")
    if start_on == "running":
        return phase == "Running"
    if phase not in ("Pending", "Running"):
        return False
    init = [c for c in st.get("conditions") or [] if c.get("type") == "Initialized"]
    return phase == "Running" or (bool(init) and init[0].get("status") == "True")


def probes_for(pod: Obj, wants: list[Want]) -> dict[str, Probe]:
    """The readinessProbes to run for a pod, by container: those of its run
    containers, once kwok made the pod Running (its pod-ready timer decides
    when a pod first turns Ready; the probes decide from then on). Nothing is
    written while a pod is Pending: any change to a pod restarts kwok's
    pending Stage timer (pod-ready delays would drift)."""
    meta: Obj = pod.get("metadata") or {}
    st: Obj = pod.get("status") or {}
    if meta.get("deletionTimestamp") is not None or st.get("phase") != "Running":
        return {}
    return {w.container: w.probe for w in wants if w.probe is not None}


def wants_for(
    pod: Obj, binaries: dict[str, str], source: EnvSource | None, start_on: str = "created"
) -> list[Want]:
    if not should_run(pod, start_on):
        return []
    meta: Obj = pod["metadata"]
    spec: Obj = pod.get("spec") or {}
    ip = str(pod["status"]["podIP"])
    grace = spec.get("terminationGracePeriodSeconds")
    grace_s = min(float(30 if grace is None else grace), MAX_GRACE_S)
    out: list[Want] = []
    for c in spec.get("containers") or []:
        repo, tag = split_image(str(c.get("image", "")))
        binary = binaries.get(repo)
        if binary is None:
            continue
        env = container_env(pod, c, source)
        env.setdefault("APP_VERSION", tag)
        env.setdefault("POD_NAME", str(meta["name"]))
        port = container_port(c, env)
        env.pop("PORT", None)  # the app refuses PORT together with LISTEN_ADDR
        host = ip if ":" not in ip else f"[{ip}]"
        env["LISTEN_ADDR"] = f"{host}:{port}"
        full = {"PATH": BASE_PATH, "HOSTNAME": str(meta["name"]), "HOME": "/root", **env}
        key = f"{meta['namespace']}_{meta['name']}_{c['name']}"
        out.append(
            Want(
                key=key,
                uid=str(meta["uid"]),
                binary=binary,
                argv=tuple(str(a) for a in c.get("args") or []),
                env=tuple(sorted(full.items())),
                listen=env["LISTEN_ADDR"],
                grace_s=grace_s,
                container=str(c["name"]),
                probe=readiness_probe(c, ip),
            )
        )
    return out


# ---------------------------------------------------------------- watcher ---
class PodCache:
    """All pods, kept current by a list+watch thread. `changed` gets an item
    on every change (the main loop reconciles the whole set each time)."""

    def __init__(self, core: Any) -> None:
        self.core = core
        self.pods: dict[str, Obj] = {}
        self.lock = threading.Lock()
        self.changed: queue.Queue[None] = queue.Queue()
        self.synced = threading.Event()
        self.stop = threading.Event()

    def snapshot(self) -> list[Obj]:
        with self.lock:
            return list(self.pods.values())

    def _relist(self) -> str:
        resp = self.core.list_pod_for_all_namespaces(_preload_content=False)
        body: Obj = _json(resp)
        pods = {str(p["metadata"]["uid"]): p for p in body.get("items") or []}
        with self.lock:
            self.pods = pods
        self.synced.set()
        self.changed.put(None)
        return str(body["metadata"]["resourceVersion"])

    def run(self) -> None:
        rv = ""
        while not self.stop.is_set():
            try:
                if not rv:
                    rv = self._relist()
                w = watch.Watch()  # type: ignore[no-untyped-call]
                for ev in w.stream(  # type: ignore[no-untyped-call]
                    self.core.list_pod_for_all_namespaces,
                    resource_version=rv,
                    timeout_seconds=WATCH_TIMEOUT_S,
                    allow_watch_bookmarks=True,
                ):
                    if self.stop.is_set():
                        w.stop()  # type: ignore[no-untyped-call]
                        break
                    raw: Obj = ev["raw_object"]
                    kind = ev["type"]
                    if kind == "ERROR":
                        rv = ""  # e.g. 410 Gone: list again
                        break
                    rv = str(raw["metadata"].get("resourceVersion") or rv)
                    if kind == "BOOKMARK":
                        continue
                    uid = str(raw["metadata"]["uid"])
                    with self.lock:
                        if kind == "DELETED":
                            self.pods.pop(uid, None)
                        else:
                            self.pods[uid] = raw
                    self.changed.put(None)
            except ApiException as e:
                log.warning("watch: %s %s; listing again", e.status, e.reason)
                rv = ""
                self.stop.wait(1.0)
            except Exception as e:  # connection errors: the API server may restart
                log.warning("watch: %s: %s; retrying in 1s", type(e).__name__, e)
                rv = ""
                self.stop.wait(1.0)


def _json(resp: Any) -> Obj:
    data: Obj = json.loads(resp.data)
    return data


# --------------------------------------------------------------- processes ---
@dataclass
class Proc:
    want: Want
    popen: subprocess.Popen[bytes]
    started: float
    restarts: int = 0
    stop_deadline: float | None = None  # set once SIGTERM was sent


@dataclass
class Runner:
    binaries: dict[str, str]
    log_dir: Path
    pid_dir: Path
    source: EnvSource | None
    start_on: str = "created"
    procs: dict[str, Proc] = field(default_factory=dict)  # by Want.key
    stopping: list[Proc] = field(default_factory=list)
    backoff: dict[str, tuple[float, int]] = field(default_factory=dict)  # key -> (not before, n)
    pdeathsig: list[str] = field(default_factory=list)
    publish: Publish | None = None  # sets PROBE_ANNOTATION; None: probe, publish nothing
    probers: dict[str, Prober] = field(default_factory=dict)  # by pod uid
    # Only pods whose IP lies here (kwok's pod CIDR): a real node's pods run on the node.
    pod_cidr: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None

    def mine(self, pod: Obj) -> bool:
        ip = (pod.get("status") or {}).get("podIP")
        if self.pod_cidr is None or not ip:
            return True
        return ipaddress.ip_address(str(ip)) in self.pod_cidr

    def __post_init__(self) -> None:
        (self.log_dir).mkdir(parents=True, exist_ok=True)
        (self.pid_dir).mkdir(parents=True, exist_ok=True)
        setpriv = shutil.which("setpriv")
        if setpriv:
            self.pdeathsig = [setpriv, "--pdeathsig", "TERM", "--"]

    # -- start/stop
    def _start(self, w: Want, restarts: int) -> None:
        logf = self.log_dir / f"{w.key}.log"
        with logf.open("ab") as out:
            out.write(
                f"--- {time.strftime('%H:%M:%S')} pod-runner: starting {w.binary} on {w.listen}"
                f" (restart {restarts})\n".encode()
            )
            out.flush()
            p = subprocess.Popen(
                [*self.pdeathsig, w.binary, *w.argv],
                env=dict(w.env),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd="/",
                start_new_session=True,
            )
        (self.pid_dir / f"{w.key}.pid").write_text(f"{p.pid}\n")
        self.procs[w.key] = Proc(want=w, popen=p, started=time.monotonic(), restarts=restarts)
        version = dict(w.env)["APP_VERSION"]
        log.info("started %s: pid %d on %s (%s)", w.key, p.pid, w.listen, version)

    def _stop(self, proc: Proc, why: str) -> None:
        if proc.popen.poll() is None:
            log.info("stopping %s (pid %d): %s", proc.want.key, proc.popen.pid, why)
            with contextlib.suppress(ProcessLookupError):
                proc.popen.send_signal(signal.SIGTERM)
            proc.stop_deadline = time.monotonic() + proc.want.grace_s
            self.stopping.append(proc)
        else:
            self._reaped(proc)

    def _reaped(self, proc: Proc) -> None:
        pidf = self.pid_dir / f"{proc.want.key}.pid"
        with contextlib.suppress(FileNotFoundError):
            if pidf.read_text().strip() == str(proc.popen.pid):
                pidf.unlink()

    # -- one reconcile pass
    def reconcile(self, pods: list[Obj]) -> None:
        desired: dict[str, Want] = {}
        probed: dict[str, tuple[Obj, dict[str, Probe]]] = {}  # pod uid -> (pod, probes)
        for pod in pods:
            if not self.mine(pod):
                continue
            try:
                wants = wants_for(pod, self.binaries, self.source, self.start_on)
                for w in wants:
                    desired[w.key] = w
                probes = probes_for(pod, wants)
                if probes:
                    probed[str(pod["metadata"]["uid"])] = (pod, probes)
            except Exception as e:
                log.warning("pod %s: %s: %s", _name(pod), type(e).__name__, e)
        self._sync_probers(probed)
        now = time.monotonic()
        # stop what is no longer wanted (or changed: a new pod with the same name)
        for key, proc in list(self.procs.items()):
            cur = desired.get(key)
            if cur is None or cur.uid != proc.want.uid:
                del self.procs[key]
                self.backoff.pop(key, None)
                self._stop(proc, "pod gone or not running" if cur is None else "pod replaced")
        # exited processes of pods still running: restart with a backoff
        for key, proc in list(self.procs.items()):
            rc = proc.popen.poll()
            if rc is None:
                continue
            del self.procs[key]
            self._reaped(proc)
            n = proc.restarts
            wait = RESTART_BACKOFF_S[min(n, len(RESTART_BACKOFF_S) - 1)]
            if now - proc.started > 60:
                n, wait = 0, RESTART_BACKOFF_S[0]
            log.warning("%s exited with %s; restarting in %.0fs", key, rc, wait)
            self.backoff[key] = (now + wait, n + 1)
        # start what is wanted and not running
        for key, w in desired.items():
            if key in self.procs:
                continue
            not_before, n = self.backoff.get(key, (0.0, 0))
            if now < not_before:
                continue
            if any(p.want.key == key for p in self.stopping):
                continue  # the old process of this pod is still stopping
            holder = next((p for p in self.stopping if p.want.listen == w.listen), None)
            if holder is not None:
                # kwok reuses a deleted pod's IP at once; a kubelet frees it only
                # once the old containers are gone: end the old process now.
                if holder.stop_deadline is not None:
                    log.warning(
                        "%s needs %s, still held by %s (pid %d, stopping): killing it",
                        key,
                        w.listen,
                        holder.want.key,
                        holder.popen.pid,
                    )
                    with contextlib.suppress(ProcessLookupError):
                        holder.popen.kill()
                    holder.stop_deadline = None
                continue
            try:
                self._start(w, n)
            except OSError as e:
                log.error("cannot start %s: %s", key, e)
                self.backoff[key] = (now + RESTART_BACKOFF_S[-1], n + 1)
        self.backoff = {k: v for k, v in self.backoff.items() if k in desired}
        self._reap_stopping()

    def _sync_probers(self, probed: dict[str, tuple[Obj, dict[str, Probe]]]) -> None:
        """One prober per Running pod with probes to run; stopped with the pod."""
        for uid, prober in list(self.probers.items()):
            if uid not in probed:
                prober.stop.set()
                del self.probers[uid]
        for uid, (pod, probes) in probed.items():
            if uid in self.probers:
                continue
            meta: Obj = pod["metadata"]
            value = (meta.get("annotations") or {}).get(PROBE_ANNOTATION)
            prober = Prober(
                str(meta["namespace"]),
                str(meta["name"]),
                uid,
                probes,
                value if value in (PROBE_SUCCESS, PROBE_FAILURE) else None,
                self.publish,
            )
            prober.start()
            self.probers[uid] = prober

    def _reap_stopping(self) -> None:
        now = time.monotonic()
        left: list[Proc] = []
        for proc in self.stopping:
            if proc.popen.poll() is not None:
                log.info("%s (pid %d) stopped", proc.want.key, proc.popen.pid)
                self._reaped(proc)
                continue
            if proc.stop_deadline is not None and now > proc.stop_deadline:
                log.warning("%s did not stop in %.0fs: SIGKILL", proc.want.key, proc.want.grace_s)
                with contextlib.suppress(ProcessLookupError):
                    proc.popen.kill()
                proc.stop_deadline = None
            left.append(proc)
        self.stopping = left

    def shutdown(self, timeout_s: float = 8.0) -> None:
        """Stop every process: SIGTERM, then SIGKILL after timeout_s."""
        self._sync_probers({})
        for key, proc in list(self.procs.items()):
            del self.procs[key]
            self._stop(proc, "runner shutting down")
        deadline = time.monotonic() + timeout_s
        while self.stopping and time.monotonic() < deadline:
            self._reap_stopping()
            time.sleep(0.05)
        for proc in self.stopping:
            with contextlib.suppress(ProcessLookupError):
                proc.popen.kill()
            proc.popen.wait(timeout=5)
            self._reaped(proc)
        self.stopping = []


# -------------------------------------------------------------------- main ---
def parse_map(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        repo, sep, path = item.partition("=")
        if not sep or not repo or not path:
            raise SystemExit(f"--map wants REPOSITORY=BINARY, got {item!r}")
        out[repo] = str(Path(path).resolve())
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG"))
    ap.add_argument("--log-dir", type=Path, required=True, help="per-pod process logs")
    ap.add_argument("--pid-dir", type=Path, required=True, help="per-pod process pid files")
    ap.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="REPOSITORY=BINARY",
        help="image repository -> local binary (repeatable)",
    )
    ap.add_argument(
        "--start-on",
        choices=("created", "running"),
        default="created",
        help="start a pod's process once kwok created its containers (pod IP, phase Pending,"
        " default) or only once it is Running",
    )
    ap.add_argument(
        "--pod-cidr",
        type=ipaddress.ip_network,
        help="only pods with an IP in this range (kwok's); default: every pod",
    )
    args = ap.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        stream=sys.stdout,
    )
    binaries = parse_map(args.map)
    for repo, path in binaries.items():
        if not os.access(path, os.X_OK):
            log.error("binary for %s not executable: %s", repo, path)
            return 2
    api = config.new_client_from_config(config_file=args.kubeconfig)  # type: ignore[no-untyped-call]
    core = client.CoreV1Api(api)

    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("signal %d: shutting down", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    cache = PodCache(core)
    t = threading.Thread(target=cache.run, name="pod-watch", daemon=True)
    t.start()

    def publish(namespace: str, pod: str, uid: str, value: str) -> None:
        # metadata.uid guards against a new pod of the same name (immutable: a
        # mismatch is refused)
        body = {"metadata": {"uid": uid, "annotations": {PROBE_ANNOTATION: value}}}
        core.patch_namespaced_pod(
            pod, namespace, body, _content_type="application/merge-patch+json"
        )

    runner = Runner(
        binaries,
        args.log_dir,
        args.pid_dir,
        EnvSource(core),
        args.start_on,
        publish=publish,
        pod_cidr=args.pod_cidr,
    )
    log.info("watching pods; binaries: %s; readiness probes -> %s", binaries, PROBE_ANNOTATION)
    try:
        while not stop.is_set():
            with contextlib.suppress(queue.Empty):
                cache.changed.get(timeout=TICK_S)
                while not cache.changed.empty():  # coalesce bursts
                    cache.changed.get_nowait()
            if cache.synced.is_set():
                runner.reconcile(cache.snapshot())
    finally:
        cache.stop.set()
        runner.shutdown()
        log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
