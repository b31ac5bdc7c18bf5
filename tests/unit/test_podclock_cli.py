"""Pod readiness timing from watch sightings, the CLI's action table and the status view."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from kanary.cli import action_error
from kanary.podclock import PodClock, container_trouble
from kanary.statusview import render_list, render_status

T0 = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)


def pod(
    name: str, created: datetime, ready_at: datetime | None, track: str = "canary"
) -> dict[str, Any]:
    conditions = []
    if ready_at is not None:
        conditions.append(
            {
                "type": "Ready",
                "status": "True",
                "lastTransitionTime": ready_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
        )
    return {
        "metadata": {
            "name": name,
            "namespace": "demo",
            "creationTimestamp": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "labels": {
                "kanary.dev/rollout": "gin",
                "kanary.dev/revision": "r2",
                "kanary.dev/track": track,
            },
        },
        "status": {"conditions": conditions},
    }


def test_watch_sightings_give_sub_second_ready_time() -> None:
    clock = PodClock()
    created = T0 + timedelta(milliseconds=300)  # API shows 12:00:00, truncated
    assert clock.observe(pod("p1", created, None), created) == (None, True)
    ready = created + timedelta(seconds=2, milliseconds=400)
    seconds, changed = clock.observe(pod("p1", created, ready), ready)
    assert changed
    assert seconds is not None and abs(seconds - 2.4) < 1e-6
    assert clock.api_seconds("demo", "p1") == 2.0  # the 1s-resolution cross-check
    [timing] = clock.timings("demo", "gin", "r2")
    assert timing.ready_at == ready


def test_pod_first_seen_late_falls_back_to_api_timestamps() -> None:
    clock = PodClock()
    created = T0
    ready = T0 + timedelta(seconds=3)
    seconds, _ = clock.observe(pod("p2", created, ready), T0 + timedelta(seconds=60))
    assert seconds == 3.0
    assert clock.timings("demo", "gin", "other-revision") == []
    clock.forget("demo", "p2")
    assert clock.timings("demo", "gin", "r2") == []


def test_stable_pods_count_for_their_track_only_and_are_not_timed() -> None:
    """Both tracks' pods are watched (a track is settled by its pods); only the canary's are
    readiness figures, and each track's counts are its own."""
    clock = PodClock()
    clock.observe(pod("c1", T0, T0 + timedelta(seconds=1)), T0 + timedelta(seconds=1))
    clock.observe(pod("s1", T0, T0 + timedelta(seconds=1), "stable"), T0 + timedelta(seconds=1))
    clock.observe(pod("s2", T0, None, "stable"), T0)
    assert [t.name for t in clock.timings("demo", "gin", "r2")] == ["c1"]
    assert clock.counts("demo", "gin", "canary", "r2", "") == (1, 1)
    assert clock.counts("demo", "gin", "stable", "r2", "") == (1, 2)
    assert clock.forget("demo", "s2") is True  # live when it went: its track's count changed
    gone = pod("s1", T0, T0 + timedelta(seconds=1), "stable")
    gone["metadata"]["deletionTimestamp"] = "2026-11-28T12:00:05Z"
    clock.observe(gone, T0 + timedelta(seconds=5))
    assert clock.counts("demo", "gin", "stable", "r2", "") == (0, 0)
    assert clock.forget("demo", "s1") is False  # counted out when seen terminating


def test_a_status_update_that_changes_nothing_a_tick_reads_is_not_a_change() -> None:
    """Both tracks' pods wake their Rollout (handlers.track_pod) only on a change: the kubelet's
    other status updates (scheduled, IP, container started) doubled the ticks of 250 Rollouts
    promoting (tests/bench) before."""
    clock = PodClock()
    p = pod("p4", T0, None, "stable")
    assert clock.observe(p, T0).changed
    p["status"]["podIP"] = "10.0.0.4"
    p["status"]["conditions"].append({"type": "PodScheduled", "status": "True"})
    assert not clock.observe(p, T0 + timedelta(seconds=1)).changed
    assert clock.observe(pod("p4", T0, T0 + timedelta(seconds=2), "stable"), T0).changed
    assert not clock.observe(pod("p4", T0, T0 + timedelta(seconds=2), "stable"), T0).changed


def _with_container(status: dict[str, Any]) -> dict[str, Any]:
    p = pod("p3", T0, None)
    p["status"]["containerStatuses"] = [{"name": "app", **status}]
    return p


def test_container_trouble_names_crashes_and_bad_starts_not_normal_starts() -> None:
    crash = {
        "restartCount": 3,
        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        "lastState": {"terminated": {"exitCode": 2, "reason": "Error"}},
    }
    assert container_trouble(_with_container(crash)) == (
        "container app exited with code 2 - CrashLoopBackOff after 3 restarts"
    )
    oom = {
        "restartCount": 1,
        "state": {"running": {}},
        "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}},
    }
    assert container_trouble(_with_container(oom)) == (
        "container app exited with code 137 (OOMKilled) after 1 restart"
    )
    bad_image = {"restartCount": 0, "state": {"waiting": {"reason": "ErrImageNeverPull"}}}
    assert container_trouble(_with_container(bad_image)) == "container app ErrImageNeverPull"
    creating = {"state": {"waiting": {"reason": "ContainerCreating"}}}
    for fine in ({"state": {"running": {}}}, creating):
        assert container_trouble(_with_container(fine)) is None
    # the clock keeps the latest word per pod, for the pods of one revision
    clock = PodClock()
    clock.observe(_with_container(crash), T0)
    assert clock.trouble("demo", "gin", "r2") == (
        "pod p3: container app exited with code 2 - CrashLoopBackOff after 3 restarts"
    )
    clock.observe(_with_container({"state": {"running": {}}}), T0)
    assert clock.trouble("demo", "gin", "r2") is None
    assert clock.trouble("demo", "gin", "r1") is None


def test_actions_that_make_no_sense_are_refused_with_the_phase() -> None:
    assert action_error("promote", "gin", "Paused") is None
    assert action_error("retry", "gin", "RolledBack") is None
    msg = action_error("retry", "gin", "Progressing")
    assert msg is not None and "Progressing" in msg and "RolledBack" in msg
    assert action_error("resume", "gin", None) is not None


def test_status_view_shows_step_weights_and_metrics() -> None:
    body = {
        "metadata": {"name": "gin", "namespace": "demo"},
        "spec": {
            "template": {"spec": {"containers": [{"image": "kanary/gin-demo:v2"}]}},
            "strategy": {"steps": [{"setWeight": 5}, {"setWeight": 25}, {"setWeight": 100}]},
        },
        "status": {
            "phase": "Progressing",
            "message": "step 2/3: weight 25%",
            "currentStepIndex": 1,
            "canaryWeight": 25,
            "analysis": {
                "lastCheckAt": "2026-11-28T12:00:00Z",
                "verdict": "Pass",
                "metrics": [
                    {
                        "name": "error-rate",
                        "value": 0.002,
                        "max": 0.01,
                        "requests": 812,
                        "verdict": "Pass",
                    }
                ],
            },
        },
    }
    text = render_status(body, [{"type": "Normal", "reason": "Step", "message": "weight 25%"}])
    assert "Step:      2/3" in text
    assert "Routing:   stable 75% / canary 25%" in text
    assert "Strategy:  canary" in text
    body["status"]["routing"] = "stable 75% / canary 25% + X-Canary: always -> canary"
    assert "+ X-Canary: always -> canary" in render_status(body)
    assert "error-rate 0.002 <= max 0.01, 812 requests -> Pass" in text
    assert "kanary/gin-demo:v2" in text
    listing = render_list([body])
    assert listing.splitlines()[1].split()[:4] == ["gin", "Progressing", "2/3", "25%"]
    assert render_list([]) == "No rollouts found."
