#!/usr/bin/env python3
"""Derive the local cluster's Prometheus config from the project's one.

The project's scrape config (manifests/prometheus/, written for a Prometheus
running in the cluster) discovers pods with kubernetes_sd_configs and the
in-cluster service account. Here Prometheus runs as a process inside the
cluster's network namespace, so this script rewrites that config:

- every kubernetes_sd_configs entry gets api_server (the local API server),
  tls_config.ca_file (the cluster CA) and authorization.credentials_file
  (--token-file, e.g. a token of the prometheus ServiceAccount of
  manifests/prometheus/rbac.yaml, else one written from the kubeconfig);
- the in-cluster service-account paths (/var/run/secrets/...) anywhere in the
  config point at those local files instead;
- global and per-job scrape_interval, and the rule evaluation_interval,
  become --interval (1s), and scrape_timeout is clamped to it;
- the files rule_files names (names or globs next to the config: the other
  files of its folder, or the other keys of its ConfigMap) are copied to
  OUT_DIR/rules/ and rule_files points there;
- with --alertmanager HOST:PORT, alerts go to that Alertmanager only (every
  alerting.alertmanagers entry gets it as its one static target).

The relabelling (namespace/pod/rollout/track/revision) is kept as written.

    prometheus_config.py --source manifests/prometheus --kubeconfig KUBECONFIG \\
        --out-dir STATE/dataplane [--interval 1s] [--alertmanager 127.0.0.1:9093]

Prints the path of the generated prometheus.yml.
"""

from __future__ import annotations

import argparse
import base64
import fnmatch
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import yaml

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
RULES_DIR = "rules"  # under --out-dir


def _docs(path: Path) -> list[Any]:
    with path.open() as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def find_config(source: Path) -> tuple[dict[str, Any], str]:
    """The Prometheus config (a dict with scrape_configs) in a file or folder:
    a plain prometheus.yml, or a ConfigMap whose data holds one."""
    cfg, where, _ = find_config_and_files(source)
    return cfg, where


def find_config_and_files(source: Path) -> tuple[dict[str, Any], str, dict[str, str]]:
    """find_config, and the files next to the config (name -> text), where its
    relative rule_files point: the other files of its folder, or the other
    data keys of its ConfigMap (mounted flat next to it in a pod)."""
    files = sorted(source.rglob("*.y*ml")) if source.is_dir() else [source]
    for f in files:
        for doc in _docs(f):
            if not isinstance(doc, dict):
                continue
            if "scrape_configs" in doc:
                near = {
                    p.name: p.read_text(errors="replace")
                    for p in sorted(f.parent.iterdir())
                    if p.is_file() and p != f
                }
                return doc, str(f), near
            if doc.get("kind") == "ConfigMap":
                data = {str(k): str(v) for k, v in (doc.get("data") or {}).items()}
                for key, text in data.items():
                    if not key.endswith((".yml", ".yaml")):
                        continue
                    inner = yaml.safe_load(text)
                    if isinstance(inner, dict) and "scrape_configs" in inner:
                        near = {k: v for k, v in data.items() if k != key}
                        return inner, f"{f} (ConfigMap data {key})", near
    raise SystemExit(f"no Prometheus config with scrape_configs found under {source}")


def rule_files(cfg: dict[str, Any], near: dict[str, str], where: str) -> dict[str, str]:
    """The rule files the config's rule_files names, name -> text. Each entry is
    a name or a glob (Prometheus globs the last path element) of a file next to
    the config; every entry must match a file holding rule `groups`."""
    out: dict[str, str] = {}
    for entry in cfg.get("rule_files") or []:
        pattern = str(entry)
        if "/" in pattern:
            raise SystemExit(
                f"{where}: rule_files entry {pattern!r}: only files next to the config are"
                " supported (a ConfigMap mounts its keys flat)"
            )
        matched = sorted(n for n in near if fnmatch.fnmatchcase(n, pattern))
        if not matched:
            raise SystemExit(f"{where}: rule_files entry {pattern!r} matches no file next to it")
        for name in matched:
            doc = yaml.safe_load(near[name])
            if not isinstance(doc, dict) or not isinstance(doc.get("groups"), list):
                raise SystemExit(f"{where}: rule file {name} has no `groups` list")
            out[name] = near[name]
    return out


def admin_credentials(kubeconfig: Path) -> tuple[str, str, bytes]:
    """(server, token, CA PEM) of the kubeconfig's current context."""
    kc = yaml.safe_load(kubeconfig.read_text())
    ctx_name = kc.get("current-context")
    ctx = next(c["context"] for c in kc["contexts"] if c["name"] == ctx_name)
    cluster = next(c["cluster"] for c in kc["clusters"] if c["name"] == ctx["cluster"])
    user = next(u["user"] for u in kc["users"] if u["name"] == ctx["user"])
    if "certificate-authority-data" in cluster:
        ca = base64.b64decode(cluster["certificate-authority-data"])
    else:
        ca = Path(cluster["certificate-authority"]).read_bytes()
    token = user.get("token")
    if not token:
        raise SystemExit(f"{kubeconfig}: the current user has no token")
    return str(cluster["server"]), str(token), ca


def _replace_paths(node: Any, mapping: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {k: _replace_paths(v, mapping) for k, v in node.items()}
    if isinstance(node, list):
        return [_replace_paths(v, mapping) for v in node]
    if isinstance(node, str) and node in mapping:
        return mapping[node]
    return node


def _seconds(d: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    total, num = 0.0, ""
    i = 0
    while i < len(d):
        c = d[i]
        if c.isdigit() or c == ".":
            num += c
            i += 1
            continue
        unit = "ms" if d[i : i + 2] == "ms" else c
        total += float(num) * units[unit]
        num = ""
        i += len(unit)
    return total


def localize(
    cfg: dict[str, Any],
    server: str,
    ca_file: str,
    token_file: str,
    interval: str,
    alertmanager: str | None = None,
    traefik: str | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = _replace_paths(
        cfg, {f"{SA_DIR}/ca.crt": ca_file, f"{SA_DIR}/token": token_file}
    )
    glob = out.setdefault("global", {}) or {}
    out["global"] = glob
    glob["scrape_interval"] = interval
    glob["evaluation_interval"] = interval
    if out.get("rule_files"):
        out["rule_files"] = [f"{RULES_DIR}/{f}" for f in out["rule_files"]]
    if alertmanager is not None:
        alerting = out.get("alerting") or {}
        out["alerting"] = alerting
        ams = alerting.get("alertmanagers") or [{}]
        alerting["alertmanagers"] = [
            {
                **{k: v for k, v in am.items() if not k.endswith("_sd_configs")},
                "static_configs": [{"targets": [alertmanager]}],
            }
            for am in ams
        ]
    if "scrape_timeout" in glob and _seconds(str(glob["scrape_timeout"])) > _seconds(interval):
        glob["scrape_timeout"] = interval
    for job in out.get("scrape_configs") or []:
        if job.get("job_name") == "traefik" and traefik is not None:
            # Traefik runs as a process here, not as the pod the job discovers.
            job.pop("kubernetes_sd_configs", None)
            job.pop("relabel_configs", None)
            job["static_configs"] = [{"targets": [traefik]}]
        if "scrape_interval" in job:
            job["scrape_interval"] = interval
        if "scrape_timeout" in job and _seconds(str(job["scrape_timeout"])) > _seconds(interval):
            job["scrape_timeout"] = interval
        for sd in job.get("kubernetes_sd_configs") or []:
            sd["api_server"] = server
            sd.pop("bearer_token", None)
            sd.pop("bearer_token_file", None)
            sd.pop("kubeconfig_file", None)
            sd["tls_config"] = {**(sd.get("tls_config") or {}), "ca_file": ca_file}
            sd.pop("authorization", None)
            sd["authorization"] = {"type": "Bearer", "credentials_file": token_file}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--source", type=Path, required=True, help="manifests/prometheus (or a file)")
    ap.add_argument("--kubeconfig", type=Path, default=os.environ.get("KUBECONFIG"))
    ap.add_argument("--out-dir", type=Path, required=True)
    ap.add_argument("--interval", default="1s")
    ap.add_argument(
        "--alertmanager",
        default=None,
        metavar="HOST:PORT",
        help="send alerts to this Alertmanager (replaces the config's targets)",
    )
    ap.add_argument(
        "--traefik",
        default=None,
        metavar="HOST:PORT",
        help="scrape Traefik's /metrics here (job traefik; replaces its pod discovery)",
    )
    ap.add_argument(
        "--token-file",
        type=Path,
        default=None,
        help="bearer token for kubernetes_sd (e.g. the prometheus ServiceAccount's);"
        " default: the kubeconfig user's token, written to OUT_DIR/prometheus-token",
    )
    args = ap.parse_args(argv)
    if args.kubeconfig is None:
        raise SystemExit("--kubeconfig (or KUBECONFIG) is required")
    cfg, where, near = find_config_and_files(args.source)
    rules = rule_files(cfg, near, where)
    server, token, ca = admin_credentials(args.kubeconfig)
    out_dir: Path = args.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    token_file, ca_file = out_dir / "prometheus-token", out_dir / "prometheus-ca.crt"
    old = os.umask(0o077)
    try:
        if args.token_file is not None:
            token_file = args.token_file.resolve()
        else:
            token_file.write_text(token)
        ca_file.write_bytes(ca)
        rules_dir = out_dir / RULES_DIR
        shutil.rmtree(rules_dir, ignore_errors=True)  # only what the config names now
        rules_dir.mkdir()
        for name, text in rules.items():
            (rules_dir / name).write_text(text)
        local = localize(
            cfg,
            server,
            str(ca_file),
            str(token_file),
            args.interval,
            args.alertmanager,
            traefik=args.traefik,
        )
        target = out_dir / "prometheus.yml"
        header = f"# generated by hack/dataplane/prometheus_config.py from {where}\n"
        target.write_text(header + yaml.safe_dump(local, sort_keys=False))
    finally:
        os.umask(old)
    print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
