#!/usr/bin/env python3
"""The kanary demo, inside the local cluster's netns (hack/demo.sh sets everything up first).

1. gin-demo v1 behind the Gateway, with steady load through it;
2. v2 (healthy): 5% -> 25% -> 50%, `kanary promote` at the `pause: {}` step, 100%, with live
   error rate, p99 and readiness;
3. v3 with ERROR_RATE=0.2: kanary rolls it back and says why;
4. a summary: each step's time and weight, the measured numbers, readiness, seconds from the
   first failing canary request to weight 0.
The Rollout is manifests/examples/rollout-gin-demo.yaml and the HTTPRoute
manifests/examples/httproute-gin-demo.yaml, both as shipped (only the namespace is set); the
versions are what a user changes: the image, APP_VERSION and, for v3, ERROR_RATE.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import yaml
from kubernetes import client, config

from kanary.analysis.judgement import format_value
from kanary.engine import template_hash
from kanary.spec import PodTemplate

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "manifests" / "examples"
NS, NAME = "demo", "gin-demo"
GROUP, VERSION, PLURAL = "kanary.dev", "v1alpha1", "rollouts"
GW = ("gateway.networking.k8s.io", "v1", "httproutes")


def _obj(value: object) -> dict[str, Any]:
    """The client types custom objects as `object`; they are JSON dicts."""
    return cast(dict[str, Any], value)


def say(text: str) -> None:
    print(f"\n\033[1m==> {text}\033[0m", flush=True)


def demo_rollout() -> dict[str, Any]:
    """The example as shipped; only the namespace is the demo's."""
    body = yaml.safe_load((EXAMPLES / "rollout-gin-demo.yaml").read_text())
    body["metadata"]["namespace"] = NS
    return dict(body)


def with_version(body: dict[str, Any], version: str, error_rate: str | None) -> dict[str, Any]:
    out = copy.deepcopy(body)
    container = out["spec"]["template"]["spec"]["containers"][0]
    container["image"] = f"kanary/gin-demo:{version}"
    env = [e for e in container.get("env", []) if e["name"] not in ("APP_VERSION", "ERROR_RATE")]
    env.append({"name": "APP_VERSION", "value": version})
    if error_rate is not None:
        env.append({"name": "ERROR_RATE", "value": error_rate})
    container["env"] = env
    return out


@dataclass
class Timeline:
    """What the demo saw, polled every half second, for the summary."""

    started: float = field(default_factory=time.monotonic)
    steps: list[tuple[float, str, int]] = field(default_factory=list)  # (t, step, weight)
    first_canary_traffic: float | None = None
    back_to_zero: float | None = None

    def t(self) -> float:
        return time.monotonic() - self.started


class Demo:
    def __init__(self, kubeconfig: str) -> None:
        config.load_kube_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
        self.custom = client.CustomObjectsApi()
        self.core = client.CoreV1Api()

    def ensure_namespace(self) -> None:
        """A fresh `demo` namespace: a rerun starts from v1 again, not from the last run's state."""
        try:
            self.core.delete_namespace(NS)
            print(f"  deleting namespace {NS} from an earlier run ...", flush=True)
        except client.ApiException as e:
            if e.status != 404:
                raise
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                self.core.read_namespace(NS)
            except client.ApiException as e:
                if e.status == 404:
                    break
                raise
            time.sleep(0.5)
        try:
            self.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NS)))
        except client.ApiException as e:
            if e.status != 409:
                raise

    def apply_route(self) -> None:
        route = yaml.safe_load((EXAMPLES / "httproute-gin-demo.yaml").read_text())
        route["metadata"]["namespace"] = NS
        try:
            self.custom.create_namespaced_custom_object(*GW[:2], NS, GW[2], route)
        except client.ApiException as e:
            if e.status != 409:
                raise

    def apply_rollout(self, body: dict[str, Any]) -> None:
        try:
            current = _obj(
                self.custom.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, NAME)
            )
        except client.ApiException as e:
            if e.status != 404:
                raise
            self.custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, body)
            return
        current["spec"] = body["spec"]
        self.custom.replace_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, NAME, current)

    def status(self) -> dict[str, Any]:
        body = _obj(self.custom.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, NAME))
        return dict(body.get("status") or {})

    def promote(self) -> None:
        """What `kanary promote` does: one request, with an id, that the operator consumes."""
        annotations = {"kanary.dev/action": "promote", "kanary.dev/action-id": uuid.uuid4().hex}
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, NS, PLURAL, NAME, {"metadata": {"annotations": annotations}}
        )
        while self.status().get("pauseReason") == "Step":
            time.sleep(0.5)

    def weights(self) -> tuple[int, int]:
        route = _obj(self.custom.get_namespaced_custom_object(*GW[:2], NS, GW[2], NAME))
        refs = {
            r["name"]: int(r.get("weight", 1)) for r in route["spec"]["rules"][0]["backendRefs"]
        }
        return refs[f"{NAME}-stable"], refs[f"{NAME}-canary"]

    def follow(self, body: dict[str, Any], timeout: float) -> Timeline:
        """Print a line whenever the rollout moves; stop once `body`'s template is Healthy
        (promoted) or RolledBack."""
        revision = template_hash(PodTemplate.model_validate(body["spec"]["template"]))
        tl = Timeline()
        last = ""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = self.status()
            stable_w, canary_w = self.weights()
            if canary_w > 0 and tl.first_canary_traffic is None:
                tl.first_canary_traffic = tl.t()
            if tl.first_canary_traffic is not None and canary_w == 0 and tl.back_to_zero is None:
                tl.back_to_zero = tl.t()
            analysis = (st.get("analysis") or {}).get("summary") or ""
            ready = st.get("readiness") or {}
            ready_text = (
                f" | ready p50 {ready.get('p50Seconds', 0):.1f}s"
                f" max {ready.get('maxSeconds', 0):.1f}s"
                if ready.get("count")
                else ""
            )
            line = (
                f"{st.get('phase', '-'):11} step {st.get('step') or '-':5} "
                f"route {stable_w:3}/{canary_w:<3} {analysis}{ready_text}"
            )
            if line != last:
                print(f"  [{tl.t():6.1f}s] {line}", flush=True)
                last = line
                tl.steps.append((tl.t(), str(st.get("step")), canary_w))
            if st.get("pauseReason") == "Step" and st.get("canaryRevision") == revision:
                print(f"  [{tl.t():6.1f}s] on-call: kanary promote {NAME} -n {NS}", flush=True)
                self.promote()
            promoted = st.get("phase") == "Healthy" and st.get("stableRevision") == revision
            rolled_back = st.get("phase") == "RolledBack" and st.get("canaryRevision") == revision
            if promoted or rolled_back:
                return tl
            time.sleep(0.5)
        raise SystemExit(
            f"demo: rollout {revision} did not finish in {timeout:.0f}s: {self.status()}"
        )


GATEWAY = "http://127.0.0.1:8000/"  # --gateway


def wait_gateway_serves(version: str, timeout: float = 60) -> None:
    """Until the Gateway answers 200 from `version` 20 times in a row: Traefik programs a new
    route within its 2s throttle, and the load should measure the rollouts, not that."""
    deadline = time.monotonic() + timeout
    streak = 0
    while time.monotonic() < deadline and streak < 20:
        try:
            with urllib.request.urlopen(GATEWAY, timeout=2) as resp:
                ok = resp.status == 200 and json.loads(resp.read()).get("version") == version
        except (OSError, ValueError):
            ok = False
        streak = streak + 1 if ok else 0
        time.sleep(0.05 if ok else 0.25)
    if streak < 20:
        raise SystemExit(f"demo: the Gateway did not serve {version} within {timeout:.0f}s")


def load(duration: int, rate: int) -> subprocess.Popen[bytes]:
    out = open(os.environ.get("KANARY_STATE", "/tmp") + "/demo-load.json", "wb")  # noqa: SIM115
    return subprocess.Popen(
        [
            sys.executable,
            str(REPO / "hack" / "dataplane" / "load.py"),
            "--url",
            GATEWAY,
            "--rate",
            str(rate),
            "--duration",
            str(duration),
            "--json",
        ],
        stdout=out,
        stderr=subprocess.DEVNULL,
    )


def _text(value: object) -> str:
    """For the summary: "-" for nothing (steps were recorded as str(None))."""
    return "-" if value is None or value in ("", "None") else str(value)


def _counts(counts: object) -> str:
    """{"200": 812, "500": 30} -> "200: 812, 500: 30"."""
    if not isinstance(counts, dict) or not counts:
        return "-"
    return ", ".join(f"{k}: {v}" for k, v in counts.items())


def rollback_alert(alertmanager: str, timeout: float = 60) -> dict[str, Any] | None:
    """The active KanaryRollback alert of the demo's Rollout, from Alertmanager's API v2."""
    query = urllib.parse.urlencode(
        [
            ("filter", 'alertname="KanaryRollback"'),
            ("filter", f'namespace="{NS}"'),
            ("filter", f'rollout="{NAME}"'),
            ("active", "true"),
        ]
    )
    url = f"{alertmanager.rstrip('/')}/api/v2/alerts?{query}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                alerts = json.loads(answer.read())
            if alerts:
                return _obj(alerts[0])
        except (OSError, ValueError) as e:
            say(f"Alertmanager at {alertmanager}: {e}")
        time.sleep(1)
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kubeconfig", required=True)
    ap.add_argument("--rate", type=int, default=40, help="load, requests/s through the Gateway")
    ap.add_argument(
        "--gateway", default="http://127.0.0.1:8000/", help="the Gateway's URL (%(default)s)"
    )
    ap.add_argument(
        "--alertmanager",
        help="an Alertmanager the operator alerts (manifests/alerting/oncall.yaml): the summary "
        "shows the rollback's alert from its API",
    )
    args = ap.parse_args()
    global GATEWAY
    GATEWAY = args.gateway
    demo = Demo(args.kubeconfig)
    base = demo_rollout()

    say("gin-demo v1 behind the Gateway (HTTPRoute gin-demo, stable 100 / canary 0)")
    demo.ensure_namespace()
    demo.apply_route()
    v1 = with_version(base, "v1", None)
    demo.apply_rollout(v1)
    demo.follow(v1, timeout=120)
    wait_gateway_serves("v1")

    say(f"steady load: {args.rate} requests/s through the Gateway for the rest of the demo")
    loader = load(duration=900, rate=args.rate)

    say(
        "rolling out v2 (healthy): 5% -> 25% -> 50%, promote at the pause, 100%; each weight"
        " is held until a 30s analysis window has passed on it"
    )
    v2 = with_version(base, "v2", None)
    demo.apply_rollout(v2)
    healthy = demo.follow(v2, timeout=600)
    after_v2 = demo.status()

    say("rolling out v3 with ERROR_RATE=0.2: kanary must roll it back")
    v3 = with_version(base, "v3", "0.2")
    demo.apply_rollout(v3)
    failing = demo.follow(v3, timeout=300)
    final = demo.status()
    alert = rollback_alert(args.alertmanager) if args.alertmanager else None
    loader.terminate()
    loader.wait(timeout=10)

    say("summary")
    print(f"  v2: {_text(after_v2.get('phase'))} in {healthy.t():.1f}s")
    for t, step, weight in healthy.steps:
        print(f"      {t:6.1f}s  step {_text(step):5} weight {weight}%")
    ready = after_v2.get("readiness") or {}
    if ready.get("count"):
        print(
            f"      readiness: {ready['count']} pods,"
            f" p50 {ready['p50Seconds']:.1f}s, max {ready['maxSeconds']:.1f}s"
        )
    print(f"  v3: {_text(final.get('phase'))}: {_text(final.get('message'))}")
    for m in (final.get("analysis") or {}).get("metrics") or []:
        value, requests = m.get("value"), m.get("requests")
        print(
            f"      {m['name']}: {'-' if value is None else format_value(m['name'], value)}"
            f" (verdict {m['verdict']}, requests {'-' if requests is None else f'{requests:.0f}'})"
        )
    if failing.first_canary_traffic is not None and failing.back_to_zero is not None:
        print(
            f"      seconds from the first canary traffic to weight 0: "
            f"{failing.back_to_zero - failing.first_canary_traffic:.1f}s"
        )
    load_path = Path(os.environ.get("KANARY_STATE", "/tmp")) / "demo-load.json"
    if load_path.exists() and load_path.stat().st_size:
        report = json.loads(load_path.read_text())
        print(
            f"  load: {_text(report.get('sent'))} requests,"
            f" status {_counts(report.get('status'))}, versions {_counts(report.get('version'))}"
        )
    if args.alertmanager:
        if alert is None:
            print(f"  alert: no KanaryRollback alert for {NS}/{NAME} in {args.alertmanager}")
        else:
            labels, notes = alert["labels"], alert["annotations"]
            shown = ", ".join(f"{k}={labels[k]}" for k in sorted(labels))
            print(f"  alert in Alertmanager ({args.alertmanager}): {shown}")
            measured = f"{notes.get('metric', '?')} {notes.get('value', '?')}"
            print(f"      {measured}: {notes.get('summary')}")
    ok = after_v2.get("phase") == "Healthy" and final.get("phase") == "RolledBack"
    ok = ok and (alert is not None or not args.alertmanager)
    print("\n" + ("demo passed" if ok else "demo FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
