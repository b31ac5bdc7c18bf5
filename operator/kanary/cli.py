"""`kanary`: run the operator, watch and steer Rollouts (also the kubectl plugin kubectl-kanary).

Every action is an annotation the operator consumes once, so plain kubectl can do the same:
    kubectl annotate rollout NAME kanary.dev/action=promote --overwrite
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
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


def error_message(e: Exception) -> str | None:
    """The one line `kanary: error: ...` for what the user can act on; None for a bug (let the
    traceback show)."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError, MaxRetryError

    if isinstance(e, CliError):
        return str(e)
    if isinstance(e, MaxRetryError):  # refused, timed out, TLS: the client retried, then gave up
        why = e.reason if e.reason is not None else e
        return f"cannot reach the Kubernetes API server {_server(e.pool)}: {_why(why)}"
    if isinstance(e, HTTPError):
        return f"lost the Kubernetes API server {_server(getattr(e, 'pool', None))}: {_why(e)}"
    if isinstance(e, ApiException):
        detail = _server_says(e)
        if e.status == 403:
            return detail if " is forbidden" in detail else f"forbidden: {detail}"
        if e.status == 401:
            return f"the API server rejected the kubeconfig's credentials: {detail}"
        return f"the API server answered {e.status}: {detail}"
    return None


def _server(pool: Any) -> str:
    """The API server's URL: from the connection pool, else the loaded kubeconfig."""
    if pool is not None and getattr(pool, "host", None):
        return f"{pool.scheme}://{pool.host}:{pool.port}"
    from kubernetes import client

    return str(client.Configuration.get_default_copy().host)


def _why(e: BaseException) -> str:
    """urllib3's text without the connection object it starts with."""
    text = str(e.args[-1]) if e.args else type(e).__name__
    return text.split("): ", 1)[-1].removeprefix("None: ")


def _server_says(e: Any) -> str:
    """The `message` of the API server's Status body, else the HTTP status."""
    try:
        return str(json.loads(e.body)["message"])
    except (TypeError, ValueError, KeyError):
        return f"{e.status} {e.reason or ''}".strip()


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


def _core() -> Any:
    from kubernetes import client

    return client.CoreV1Api()


def _namespace_exists(namespace: str) -> bool:
    """False only when the API server says the namespace is not there (403: cannot tell)."""
    from kubernetes.client.exceptions import ApiException

    try:
        _core().read_namespace(namespace)
    except ApiException as e:
        if e.status == 404:
            return False
        if e.status == 403:
            return True
        raise
    return True


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
    # one kept connection per tick thread, plus the Lease's and the odd report's (the client's
    # default is 5 per core: ticks beyond it opened and dropped a TLS connection each call)
    from kubernetes import client

    from kanary import handlers

    configuration = client.Configuration.get_default_copy()
    configuration.connection_pool_maxsize = handlers.WORKERS + 4
    client.Configuration.set_default(configuration)


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
        if e.status != 404:
            raise
        if not _namespace_exists(namespace):
            raise CliError(f"namespace {namespace} not found") from e
        raise CliError(f"rollout {name} not found in namespace {namespace}") from e


def _event_time(e: Any) -> datetime:
    t = e.event_time or e.last_timestamp or e.first_timestamp or e.metadata.creation_timestamp
    if not isinstance(t, datetime):
        return datetime.min.replace(tzinfo=UTC)
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _events(namespace: str, name: str) -> list[Mapping[str, Any]]:
    """The Rollout's Events, oldest first."""
    items = (
        _core()
        .list_namespaced_event(
            namespace, field_selector=f"involvedObject.kind=Rollout,involvedObject.name={name}"
        )
        .items
    )
    return [
        {"type": e.type, "reason": e.reason, "message": e.message, "time": _event_time(e)}
        for e in sorted(items, key=_event_time)
    ]


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
    if items or args.all_namespaces:
        print(render_list(items, with_namespace=args.all_namespaces))
        return 0
    if not _namespace_exists(args.namespace):
        raise CliError(f"namespace {args.namespace} not found")
    print(f"No rollouts found in namespace {args.namespace}.{_elsewhere_hint(api)}")
    return 0


def _elsewhere_hint(api: Any) -> str:
    """The hint after an empty listing, e.g. " (3 in other namespaces: kanary list -A)"."""
    from kubernetes.client.exceptions import ApiException

    try:
        count = len(api.list_cluster_custom_object(API_GROUP, API_VERSION, PLURAL)["items"])
    except ApiException:
        return ""
    return f" ({count} in other namespaces: kanary list -A)" if count else ""


def wait_for_ack(
    get: Callable[[], Mapping[str, Any]],
    request_id: str,
    timeout: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    interval: float = 0.5,
) -> Mapping[str, Any] | None:
    """The Rollout's status.lastAction once it answers `request_id`; None after `timeout`."""
    deadline = clock() + timeout
    while True:
        last = (get().get("status") or {}).get("lastAction") or {}
        if last.get("id") == request_id:
            return dict(last)
        remaining = deadline - clock()
        if remaining <= 0:
            return None
        sleep(min(interval, remaining))


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
    where = f"rollout {args.namespace}/{args.name}"
    if not args.wait:
        print(f"{where}: {action} requested")
        return 0
    ack = wait_for_ack(lambda: _get(api, args.namespace, args.name), request, args.timeout)
    if ack is None:
        raise CliError(
            f"{where}: the operator did not acknowledge {action} within {args.timeout:g}s"
            " (is it running?)"
        )
    if ack.get("result") == "Accepted":
        print(f"{where}: {action} accepted")
        return 0
    print(f"{where}: {action} refused: {ack.get('reason') or 'no reason given'}", file=sys.stderr)
    return 1


def prometheus_env(default_url: str | None, allowed: Sequence[str] | None) -> dict[str, str]:
    """`kanary run`'s Prometheus flags as the environment the analysis reads."""
    env = {}
    if default_url:
        env["KANARY_PROMETHEUS_DEFAULT_URL"] = default_url
    if allowed:
        env["KANARY_PROMETHEUS_ALLOWED_URLS"] = ",".join(allowed)
    return env


def cmd_run(args: argparse.Namespace) -> int:
    # before the imports: the analysis may read them when it loads
    os.environ.update(prometheus_env(args.prometheus_url, args.allow_prometheus_url))
    from kanary.analysis.endpoints import PrometheusPolicy

    try:
        PrometheusPolicy.from_env(os.environ)
    except ValueError as e:
        raise CliError(str(e)) from e

    import kopf

    from kanary import handlers, metrics_export

    handlers.set_options(_operator_options(args))
    configure_logging(args.verbose)
    _load_config_for_operator()
    if args.metrics_port:
        metrics_export.serve(args.metrics_port, handlers.readiness)
    handlers.runtime()
    if not args.namespace:
        handlers.watch_namespaces()
    kopf.run(
        standalone=True,
        clusterwide=not args.namespace,
        namespaces=args.namespace or (),
        liveness_endpoint=args.liveness,
    )
    return 0


def configure_logging(verbose: bool) -> None:
    """INFO, or DEBUG with -v. Kopf's per-object log says "Handler 'track_pod' succeeded." at
    INFO for every watch event of every pod, Deployment and Service kanary owns (14 900 lines
    in one 250-Rollout rollout): it keeps its warnings and errors only, unless -v."""
    import logging

    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO)
    logging.getLogger("kopf.objects").setLevel(logging.DEBUG if verbose else logging.WARNING)


def _operator_options(args: argparse.Namespace) -> Any:
    from kanary.handlers import Options
    from kanary.leader import Timings
    from kanary.scope import Selector

    try:
        timings = Timings(args.lease_duration, args.lease_renew_deadline, args.lease_retry_period)
        selector = Selector.parse(args.selector)
    except ValueError as e:
        raise CliError(str(e)) from e
    defaults = Options()
    return Options(
        identity=args.identity or os.environ.get("POD_NAME") or defaults.identity,
        leader_elect=args.leader_elect,
        lease_namespace=args.lease_namespace
        or os.environ.get("POD_NAMESPACE")
        or defaults.lease_namespace,
        lease_name=args.lease_name,
        timings=timings,
        selector=selector,
        namespaces=tuple(args.namespace or ()),
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kanary", description="Canary rollouts for Kubernetes")
    p.add_argument("--version", action="version", version=f"kanary {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the operator against the current kubeconfig")
    run.add_argument("-n", "--namespace", action="append", help="watch only these namespaces")
    run.add_argument("--liveness", default="http://0.0.0.0:8080/healthz", help="liveness URL")
    run.add_argument("--metrics-port", type=int, default=8081, help="/metrics port (0: off)")
    run.add_argument(
        "--prometheus-url",
        metavar="URL",
        help="Prometheus for Rollouts that name none (sets KANARY_PROMETHEUS_DEFAULT_URL)",
    )
    run.add_argument(
        "--allow-prometheus-url",
        metavar="URL",
        action="append",
        help="a Prometheus base URL a Rollout may name; repeat for several"
        " (sets KANARY_PROMETHEUS_ALLOWED_URLS, comma-separated)",
    )
    run.add_argument(
        "-l",
        "--selector",
        default="",
        help="serve only Rollouts with these labels (key=value,key!=value,key,!key), to shard"
        " Rollouts between operator instances",
    )
    lease = run.add_argument_group("leader election (a coordination.k8s.io Lease)")
    lease.add_argument(
        "--leader-elect",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="only the Lease holder acts (default: on; off only for a single replica)",
    )
    lease.add_argument(
        "--identity",
        default=None,
        help="this replica's name in the Lease, unique per replica (default: $POD_NAME, else"
        " hostname-pid)",
    )
    lease.add_argument(
        "--lease-namespace",
        default=None,
        help="namespace of the Lease (default: $POD_NAMESPACE, else kanary-system)",
    )
    lease.add_argument("--lease-name", default="kanary-leader", help="(default: kanary-leader)")
    lease.add_argument(
        "--lease-duration",
        type=float,
        default=15.0,
        metavar="SECONDS",
        help="a standby takes over a Lease not renewed for this long (default: 15)",
    )
    lease.add_argument(
        "--lease-renew-deadline",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="the leader stops writing when it could not renew for this long (default: 10)",
    )
    lease.add_argument(
        "--lease-retry-period",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="seconds between election rounds (default: 2)",
    )
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
        ap.add_argument(
            "--wait", action="store_true", help="wait for the operator to accept or refuse it"
        )
        ap.add_argument(
            "--timeout", type=float, default=60.0, help="seconds --wait waits (default 60)"
        )
        ap.set_defaults(func=cmd_action, action=action)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parser().parse_args(argv)
    except SystemExit as e:  # --help and --version: 0; a bad flag: 1 (argparse exits 2)
        return 0 if e.code in (0, None) else 1
    if getattr(args, "namespace", None) is None and args.command not in ("run",):
        args.namespace = _default_namespace()
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except Exception as e:
        message = error_message(e)
        if message is None:
            raise
        print(f"kanary: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
