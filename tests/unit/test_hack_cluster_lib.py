"""hack/cluster/lib.sh's process handling, run in bash with `ip` replaced by a shim (no
network namespace needed): what up.sh and node-up.sh rely on when they start a component."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

LIB = Path(__file__).resolve().parents[2] / "hack" / "cluster" / "lib.sh"

# `ip netns exec NAME CMD...` runs CMD here; every other use of ip is not expected.
IP_SHIM = """#!/bin/sh
[ "$1 $2" = "netns exec" ] || { echo "ip shim: unexpected: $*" >&2; exit 2; }
shift 3
exec "$@"
"""


def run_lib(tmp_path: Path, script: str) -> subprocess.CompletedProcess[str]:
    shim = tmp_path / "shim"
    shim.mkdir(exist_ok=True)
    (shim / "ip").write_text(IP_SHIM)
    (shim / "ip").chmod(0o755)
    state = tmp_path / "state"
    env = {
        **os.environ,
        "PATH": f"{shim}:{os.environ['PATH']}",
        "KANARY_STATE": str(state),
        "KANARY_NETNS": "kanary-unit",
    }
    prelude = 'set -euo pipefail; source "$0"; mkdir -p "${PID_DIR}" "${LOG_DIR}"\n'
    return subprocess.run(
        ["bash", "-c", prelude + script, str(LIB)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_a_component_slow_to_exec_is_not_reported_dead(tmp_path: Path) -> None:
    """CI saw `etcd died` with an empty log: check_alive ran while the started process was
    still the forked shell (not yet exec'd), so it looked like another program, its pid file
    was removed, and the etcd that then started held its ports against every later up.sh.
    Here the fork blocks opening its log (a FIFO nobody reads yet) for 0.5 s."""
    out = run_lib(
        tmp_path,
        """
        mkfifo "${LOG_DIR}/slow.log"
        ( sleep 0.5; exec cat "${LOG_DIR}/slow.log" >/dev/null ) &
        start slow /bin/sleep 30
        check_alive slow
        pid="$(component_pid slow)"
        echo "alive ${pid}"
        kill "${pid}"
        """,
    )
    assert out.returncode == 0, out.stderr
    assert "died" not in out.stderr
    assert out.stdout.startswith("alive ")


def test_a_component_that_exits_is_reported_dead_with_its_log(tmp_path: Path) -> None:
    """The other side: a component that really dies is reported, with its last log lines."""
    out = run_lib(
        tmp_path,
        """
        start broken /bin/sh -c 'echo "bind: address already in use"; exit 1'
        sleep 0.5
        check_alive broken
        echo "not reached"
        """,
    )
    assert out.returncode == 1
    assert "broken died" in out.stderr
    assert "address already in use" in out.stderr
    assert "not reached" not in out.stdout
