"""Workers share their parent's stdout: each announcement must arrive as one whole line."""

from __future__ import annotations

import subprocess
import sys
import textwrap

WORKERS, LINES = 4, 300

# Each worker announces itself many times at once, as `--workers N` processes do at start.
SCRIPT = textwrap.dedent(
    f"""
    import os
    from kato_grpc.server.app import say

    children = []
    for worker in range({WORKERS}):
        pid = os.fork()
        if pid == 0:
            for n in range({LINES}):
                say(f"kato-grpc listening on 127.0.0.1:50051 (pid {{os.getpid()}}, line {{n}}, data ./kato-data)")
            os._exit(0)
        children.append(pid)
    for pid in children:
        os.waitpid(pid, 0)
    """
)


def test_lines_from_concurrent_workers_never_interleave():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True).stdout
    lines = out.splitlines()
    assert len(lines) == WORKERS * LINES
    broken = [line for line in lines if line.count("kato-grpc listening on") != 1 or not line.endswith("kato-data)")]
    assert broken == []
