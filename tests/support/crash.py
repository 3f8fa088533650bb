"""A writer killed with SIGKILL mid-stream: which learns had it been told were stored?"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

from tests.support.server import ROOT

# Learns ((s<i>,), (t,)) with emotive joy = i/7, one `apply` each, printing every ack.
_CHILD = textwrap.dedent(
    """
    import sys
    from kato_grpc.core.learning import pattern_name
    from kato_grpc.core.model import LearnPattern
    from {module} import {store}

    store = {store}(sys.argv[1])
    i = 0
    while True:
        events = ((f"s{{i}}",), ("t",))
        name = pattern_name(events)
        store.apply("crash", [LearnPattern(name, events, ({{"joy": i / 7}},), (), 5)])
        print("acked", name, flush=True)
        i += 1
    """
)


def acked_before_sigkill(module: str, store: str, target: str, count: int) -> list[str]:
    """Run a learning child on `store(target)`, SIGKILL it after `count` acks (while it
    is learning the next pattern) and return every name it acknowledged, in order."""
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD.format(module=module, store=store), target],
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        cwd=ROOT,
    )
    acked: list[str] = []
    try:
        while len(acked) < count:
            line = child.stdout.readline()
            assert line, f"child exited before acknowledging {count} learns"
            acked.append(line.split()[1])
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(30)
    acked += [line.split()[1] for line in child.stdout.read().splitlines() if line.startswith("acked")]
    child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    return acked
