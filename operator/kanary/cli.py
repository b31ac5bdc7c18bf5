"""`kanary`: run the operator, watch and steer Rollouts (also the kubectl plugin kubectl-kanary).

Every action is an annotation the operator consumes once, so plain kubectl can do the same:
    kubectl annotate rollout NAME kanary.dev/action=promote --overwrite
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from kanary import __version__
from kanary.objects import ANNOTATION_ACTION, ANNOTATION_ACTION_ID
from kanary.observation import ManualAction
from kanary.spec import API_GROUP, API_VERSION, PLURAL
from kanary.statusview import render_list, render_status

# Which manual action makes sense in which phase (the operator re-checks; this is for a clear,
# immediate error at the terminal instead of a Warning Event later).
ALLOWED: dict[ManualAction, tuple[str, ...]] = {
    "promote": ("Progressing", "Paused"),
    "promote-full": ("Progressing", "Paused"),
    "abort": ("Progressing", "Paused"),
    "retry": ("RolledBack",),
    "pause": ("Progressing",),
    "resume": ("Paused",),
}


class CliError(Exception):
    pass


def action_error(action: ManualAction, name: str, phase: str | None) -> str | None:
    allowed = ALLOWED[action]
    if phase in allowed:
        return None
    return (
        f"cannot {action} rollout {name}: it is {phase or 'not yet reconciled'}; "
        f"{action} needs phase {' or '.join(allowed)}"
    )


def _api() -> Any:
    from kubernetes import client, config

    try:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    except Exception as e:  # the client raises several types for a missing or broken file
        where = os.environ.get("KUBECONFIG", "~/.kube/config")
        raise CliError(f"cannot load kubeconfig {where}: {e}") from e
    return client.CustomObjectsApi()


def _load_config_for_operator() -> None:
    """In a pod: the ServiceAccount; elsewhere: the kubeconfig (KUBECONFIG or ~/.kube/config)."""
    from kubernetes import config

    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        try:
            config.load_kube_config()  # type: ignore[no-untyped-call]
        except Exception as e:
            where = os.environ.get("KUBECONFIG", "~/.kube/config")
            raise CliError(f"not in a cluster and cannot load kubeconfig {where}: {e}") from e


def _default_namespace() -> str:
    from kubernetes import config

    try:
        _, ctx = config.list_kube_config_contexts()  # type: ignore[no-untyped-call]
        return str(ctx.get("context", {}).get("namespace") or "default")
    except Exception:
        return "default"


def _get(api: Any, namespace: str, name: str) -> dict[str, Any]:
    from kubernetes.client.exceptions import ApiException

    try:
        return dict(
            api.get_namespaced_custom_object(API_GROUP, API_VERSION, namespace, PLURAL, name)
        )
    except ApiException as e:
        if e.status == 404:
            raise CliError(f"rollout {name} not found in namespace {namespace}") from e
        raise CliError(f"reading rollout {name}: {e.status} {e.reason}") from e


def _events(namespace: str, name: str) -> list[Mapping[str, Any]]:
    from kubernetes import client

    items = (
        client.CoreV1Api()
        .list_namespaced_event(
            namespace, field_selector=f"involvedObject.kind=Rollout,involvedObject.name={name}"
        )
        .items
    )
    out = [
        {
            "type": e.type,
            "reason": e.reason,
            "message": e.message,
            "time": e.last_timestamp or e.event_time or e.metadata.creation_timestamp,
        }
        for e in items
    ]
    return sorted(out, key=lambda e: str(e["time"]))


def cmd_status(args: argparse.Namespace) -> int:
    api = _api()
    last = ""
    while True:
        body = _get(api, args.namespace, args.name)
        text = render_status(body, _events(args.namespace, args.name)[-5:])
        if not args.watch:
            print(text)
            return 0
        if text != last:
            if sys.stdout.isatty():
                print("\033[2J\033[H", end="")
            print(text, flush=True)
            last = text
        phase = body.get("status", {}).get("phase")
        if args.exit_when_done and phase in ("Healthy", "RolledBack", "Invalid"):
            return 0 if phase == "Healthy" else 1
        time.sleep(args.interval)


def cmd_list(args: argparse.Namespace) -> int:
    api = _api()
    if args.all_namespaces:
        items = api.list_cluster_custom_object(API_GROUP, API_VERSION, PLURAL)["items"]
    else:
        items = api.list_namespaced_custom_object(API_GROUP, API_VERSION, args.namespace, PLURAL)[
            "items"
        ]
    print(render_list(items, with_namespace=args.all_namespaces))
    return 0


def cmd_action(args: argparse.Namespace) -> int:
    action: ManualAction = args.action
    if action == "promote" and getattr(args, "full", False):
        action = "promote-full"
    api = _api()
    body = _get(api, args.namespace, args.name)
    problem = action_error(action, args.name, body.get("status", {}).get("phase"))
    if problem:
        raise CliError(problem)
    request = uuid.uuid4().hex[:12]
    api.patch_namespaced_custom_object(
        API_GROUP,
        API_VERSION,
        args.namespace,
        PLURAL,
        args.name,
        {"metadata": {"annotations": {ANNOTATION_ACTION: action, ANNOTATION_ACTION_ID: request}}},
    )
    print(f"rollout {args.namespace}/{args.name}: {action} requested")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    import logging

    import kopf

    from kanary import handlers, metrics_export

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO)
    _load_config_for_operator()
    if args.metrics_port:
        metrics_export.serve(args.metrics_port)
    handlers.runtime()
    kopf.run(
        standalone=True,
        clusterwide=not args.namespace,
        namespaces=args.namespace or (),
        liveness_endpoint=args.liveness,
    )
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kanary", description="Canary rollouts for Kubernetes")
    p.add_argument("--version", action="version", version=f"kanary {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the operator against the current kubeconfig")
    run.add_argument("-n", "--namespace", action="append", help="watch only these namespaces")
    run.add_argument("--liveness", default="http://0.0.0.0:8080/healthz", help="liveness URL")
    run.add_argument("--metrics-port", type=int, default=8081, help="/metrics port (0: off)")
    run.add_argument("-v", "--verbose", action="store_true")
    run.set_defaults(func=cmd_run)

    def named(cmd: str, help_text: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(cmd, help=help_text)
        sp.add_argument("name", help="Rollout name")
        sp.add_argument("-n", "--namespace", default=None)
        return sp

    st = named("status", "where a rollout is, and why")
    st.add_argument("-w", "--watch", action="store_true", help="keep watching")
    st.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes")
    st.add_argument(
        "--exit-when-done", action="store_true", help="with -w: stop at Healthy/RolledBack"
    )
    st.set_defaults(func=cmd_status)

    ls = sub.add_parser("list", help="all rollouts")
    ls.add_argument("-n", "--namespace", default=None)
    ls.add_argument("-A", "--all-namespaces", action="store_true")
    ls.set_defaults(func=cmd_list)

    helps = {
        "promote": "leave the current pause (--full: promote now)",
        "abort": "roll back now: weight 0, canary scaled down",
        "retry": "start a rolled-back rollout again",
        "pause": "hold at the current step",
        "resume": "continue a paused rollout",
    }
    for action, help_text in helps.items():
        ap = named(action, help_text)
        if action == "promote":
            ap.add_argument("--full", action="store_true", help="skip the remaining steps")
        ap.set_defaults(func=cmd_action, action=action)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if getattr(args, "namespace", None) is None and args.command not in ("run",):
        args.namespace = _default_namespace()
    try:
        return int(args.func(args))
    except CliError as e:
        print(f"kanary: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
