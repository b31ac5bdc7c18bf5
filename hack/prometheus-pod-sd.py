#!/usr/bin/env python3
"""Kubernetes pod discovery for a Prometheus built without it (Debian's `prometheus`).

Debian's package leaves Kubernetes service discovery out (its NEWS.Debian: "Kubernetes support
has been completely removed, due to the insane amount of dependencies in their client
library"), so `kubernetes_sd_configs` is refused there. This helper stands in for it:

    prometheus-pod-sd.py serve --kubeconfig KC [--listen 127.0.0.1:9092]
        serves GET /targets in Prometheus' HTTP SD format: one target per container port of
        every pod with an IP, labelled with the same __meta_kubernetes_* labels that
        kubernetes_sd_configs (role pod) gives. So the relabel_configs of
        manifests/prometheus/config/prometheus.yml apply unchanged.

    prometheus-pod-sd.py config --source manifests/prometheus/config/prometheus.yml \\
            --url http://127.0.0.1:9092/targets [--interval 1s]
        prints that config with each `kubernetes_sd_configs: [{role: pod}]` replaced by
        `http_sd_configs: [{url: URL, refresh_interval: 1s}]`; nothing else changes.

It lists pods with the kubeconfig's credentials (use the prometheus ServiceAccount's token from
manifests/prometheus/rbac.yaml to exercise that RBAC: get/list/watch pods is all it needs).
Loopback only by default; every request to the API server has a timeout.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

META = "__meta_kubernetes_"
_INVALID = re.compile(r"[^a-zA-Z0-9_]")


def sanitize(name: str) -> str:
    """Prometheus' strutil.SanitizeLabelName: kanary.dev/rollout -> kanary_dev_rollout."""
    return _INVALID.sub("_", name)


def _pod_labels(pod: dict[str, Any]) -> dict[str, str]:
    meta, spec, status = pod.get("metadata", {}), pod.get("spec", {}), pod.get("status", {})
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )
    out = {
        f"{META}namespace": meta.get("namespace", ""),
        f"{META}pod_name": meta.get("name", ""),
        f"{META}pod_ip": status.get("podIP", ""),
        f"{META}pod_ready": "true" if ready else "false",
        f"{META}pod_phase": status.get("phase", ""),
        f"{META}pod_node_name": spec.get("nodeName", ""),
        f"{META}pod_host_ip": status.get("hostIP", ""),
        f"{META}pod_uid": meta.get("uid", ""),
    }
    for kind, values in (("label", meta.get("labels")), ("annotation", meta.get("annotations"))):
        for key, value in (values or {}).items():
            out[f"{META}pod_{kind}_{sanitize(key)}"] = str(value)
            out[f"{META}pod_{kind}present_{sanitize(key)}"] = "true"
    for ref in meta.get("ownerReferences") or []:
        if ref.get("controller"):
            out[f"{META}pod_controller_kind"] = ref.get("kind", "")
            out[f"{META}pod_controller_name"] = ref.get("name", "")
    return out


def target_groups(pods: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """HTTP SD target groups for pods (API JSON, camelCase), as kubernetes_sd role pod makes.

    One group per pod; one target per container port, or one per container without ports.
    Pods without an IP have no targets (as in Prometheus).
    """
    groups = []
    for pod in pods:
        ip = (pod.get("status") or {}).get("podIP")
        if not ip:
            continue
        common = _pod_labels(pod)
        targets = []
        for container in (pod.get("spec") or {}).get("containers") or []:
            base = {
                f"{META}pod_container_name": container.get("name", ""),
                f"{META}pod_container_image": container.get("image", ""),
                f"{META}pod_container_init": "false",
            }
            ports = container.get("ports") or []
            if not ports:
                targets.append({"__address__": ip, **base})
            for port in ports:
                number = int(port["containerPort"])
                targets.append(
                    {
                        "__address__": f"{ip}:{number}",
                        **base,
                        f"{META}pod_container_port_name": port.get("name", ""),
                        f"{META}pod_container_port_number": str(number),
                        f"{META}pod_container_port_protocol": port.get("protocol", "TCP"),
                    }
                )
        # HTTP SD has one label set per group: a group per target keeps container labels apart
        groups.extend(
            {"targets": [t.pop("__address__")], "labels": {**common, **t}} for t in targets
        )
    return groups


def http_sd_variant(config: dict[str, Any], url: str, interval: str = "1s") -> dict[str, Any]:
    """The config with every kubernetes_sd_configs (role pod) replaced by HTTP SD from ``url``."""
    out = json.loads(json.dumps(config))  # a deep copy of plain YAML data
    for job in out.get("scrape_configs") or []:
        sds = job.pop("kubernetes_sd_configs", None)
        if sds is None:
            continue
        roles = {sd.get("role") for sd in sds}
        if roles != {"pod"}:
            raise SystemExit(f"job {job.get('job_name')}: only role pod is emulated, got {roles}")
        job["http_sd_configs"] = [{"url": url, "refresh_interval": interval}]
    return out


def kube_pod_lister(kubeconfig: str | None, selector: str) -> Callable[[], list[dict[str, Any]]]:
    from kubernetes import client, config  # the venv's pinned client; only `serve` needs it

    config.load_kube_config(config_file=kubeconfig)
    api = client.ApiClient()
    core = client.CoreV1Api(api)

    def list_pods() -> list[dict[str, Any]]:
        pods = core.list_pod_for_all_namespaces(label_selector=selector, _request_timeout=5)
        return [api.sanitize_for_serialization(p) for p in pods.items]

    return list_pods


def make_server(listen: str, list_pods: Callable[[], list[dict[str, Any]]]) -> ThreadingHTTPServer:
    host, port = listen.rsplit(":", 1)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] != "/targets":
                self._send(404, {"error": "GET /targets"})
                return
            try:
                groups = target_groups(list_pods())
            except Exception as exc:  # Prometheus keeps the last good targets on an error
                self._send(500, {"error": f"{type(exc).__name__}: {exc}"})
                return
            self._send(200, groups)

        def _send(self, status: int, body: Any) -> None:
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((host, int(port)), Handler)
    server.daemon_threads = True
    return server


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve GET /targets")
    serve.add_argument("--kubeconfig", default=None, help="default: $KUBECONFIG, ~/.kube/config")
    serve.add_argument("--listen", default="127.0.0.1:9092")
    serve.add_argument("--selector", default="kanary.dev/rollout", help="pods to list")
    conf = sub.add_parser("config", help="print the HTTP SD variant of a Prometheus config")
    conf.add_argument("--source", type=Path, required=True)
    conf.add_argument("--url", required=True)
    conf.add_argument("--interval", default="1s")
    args = ap.parse_args(argv)
    if args.command == "config":
        variant = http_sd_variant(yaml.safe_load(args.source.read_text()), args.url, args.interval)
        print(f"# generated by hack/prometheus-pod-sd.py from {args.source}")
        print(yaml.safe_dump(variant, sort_keys=False), end="")
        return 0
    server = make_server(args.listen, kube_pod_lister(args.kubeconfig, args.selector))
    print(f"prometheus-pod-sd: serving http://{args.listen}/targets", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
