"""The Lease, read and written: one election round at a time (the decisions are leader.py's).

Synchronous (call it via asyncio.to_thread). ``attempt`` reads the Lease, decides, and writes
with the resourceVersion it read, so of two candidates one gets a 409 and stays standby. A
renewal counts from the moment before the read: the standby's clock for the same Lease starts
only when it sees the write, later, so this replica's fencing deadline always ends first.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from kubernetes.client.exceptions import ApiException

from kanary import leader
from kanary.leader import LeaseRecord, Observed, Timings

log = logging.getLogger("kanary")


def _micro(t: datetime | None) -> str | None:
    return None if t is None else t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _record(lease: Any) -> tuple[LeaseRecord, str | None]:
    spec = lease.spec
    record = LeaseRecord(
        holder=spec.holder_identity or None,
        lease_seconds=int(spec.lease_duration_seconds or 0),
        acquired=spec.acquire_time,
        renewed=spec.renew_time,
        transitions=int(spec.lease_transitions or 0),
    )
    return record, lease.metadata.resource_version


class Elector:
    def __init__(
        self,
        api: Any,  # CoordinationV1Api: read, create and replace_namespaced_lease
        namespace: str,
        name: str,
        identity: str,
        timings: Timings,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.api, self.namespace, self.name, self.identity = api, namespace, name, identity
        self.timings, self.monotonic, self.wall = timings, monotonic, wall
        self.seen: Observed | None = None
        self.last_renewed: float | None = None
        self.holder: str | None = None  # as last read or written

    def may_act(self) -> bool:
        return leader.may_act(self.last_renewed, self.monotonic(), self.timings)

    def attempt(self) -> None:
        """One round: read, decide, write. API errors propagate (the caller logs and retries);
        a lost race (409) leaves this replica standing by."""
        started = self.monotonic()
        timeout = self.timings.retry_seconds
        try:
            lease = self.api.read_namespaced_lease(
                self.name, self.namespace, _request_timeout=timeout
            )
            record, rv = _record(lease)
        except ApiException as e:
            if e.status != 404:
                raise
            lease, record, rv = None, None, None
        self.seen = leader.observe(self.seen, record, rv, self.monotonic())
        action = leader.next_action(self.identity, self.seen, self.monotonic(), self.timings)
        if action == "stand-by":
            self.holder = record.holder if record is not None else None
            self.last_renewed = None  # someone else holds it: stop acting now, not at the deadline
            return
        new = leader.written(self.identity, action, self.seen, self.wall(), self.timings)
        body = self._body(new, rv)
        try:
            if lease is None:
                stored = self.api.create_namespaced_lease(
                    self.namespace, body, _request_timeout=timeout
                )
            else:
                stored = self.api.replace_namespaced_lease(
                    self.name, self.namespace, body, _request_timeout=timeout
                )
        except ApiException as e:
            if e.status in (409, 422):  # another replica wrote first
                log.debug("lease %s/%s: lost the race (%s)", self.namespace, self.name, e.status)
                return
            raise
        if action != "renew":
            log.info("lease %s/%s: %s as %s", self.namespace, self.name, action, self.identity)
        self.holder = self.identity
        self.last_renewed = started
        self.seen = leader.observe(
            self.seen, new, stored.metadata.resource_version, self.monotonic()
        )

    def release(self) -> None:
        """On a clean shutdown: give the Lease up so the standby need not wait for it to expire
        (as client-go's ReleaseOnCancel). Only while still within the renew deadline."""
        if not self.may_act() or self.seen is None or self.seen.record is None:
            return
        self.last_renewed = None
        record = self.seen.record
        body = self._body(
            LeaseRecord(None, 1, record.acquired, self.wall(), record.transitions),
            self.seen.resource_version,
        )
        try:
            self.api.replace_namespaced_lease(
                self.name, self.namespace, body, _request_timeout=self.timings.retry_seconds
            )
        except ApiException as e:
            log.debug("lease %s/%s: not released (%s)", self.namespace, self.name, e.status)

    def _body(self, record: LeaseRecord, rv: str | None) -> dict[str, Any]:
        metadata: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if rv is not None:
            metadata["resourceVersion"] = rv
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": metadata,
            "spec": {
                "holderIdentity": record.holder,
                "leaseDurationSeconds": record.lease_seconds,
                "acquireTime": _micro(record.acquired),
                "renewTime": _micro(record.renewed),
                "leaseTransitions": record.transitions,
            },
        }
