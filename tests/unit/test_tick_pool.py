"""Ticks run WORKERS at once (issue 15, throughput): on their own threads, each with a kept
connection. On asyncio's default executor (6 threads on 2 cores) 8 workers were 6, and 200
Rollouts updated at once waited for them (tests/bench/README.md, session 18)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.config import kube_config

from kanary import cli, handlers


def test_worker_many_ticks_run_at_the_same_time() -> None:
    barrier = threading.Barrier(handlers.WORKERS, timeout=5)  # broken unless all wait at once

    async def scenario() -> list[int]:
        return await asyncio.gather(
            *(handlers._in_pool(barrier.wait) for _ in range(handlers.WORKERS))
        )

    assert sorted(asyncio.run(scenario())) == list(range(handlers.WORKERS))


def test_the_operator_keeps_a_connection_per_tick_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"
        "users: [{name: u, user: {token: x}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\n"
    )
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))  # read at import: the module's too
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    before = client.Configuration.get_default_copy()
    try:
        cli._load_config_for_operator()
        pool = client.Configuration.get_default_copy().connection_pool_maxsize
        assert pool > handlers.WORKERS
    finally:
        client.Configuration.set_default(before)
