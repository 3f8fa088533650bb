"""Overload: many more concurrent Predicts than the server can serve, with and without deadlines.

    python loadtest/bench_overload.py                   # 200 concurrent, 400 calls, twice
    python loadtest/bench_overload.py --concurrency 400 --calls 2000

A server on the embedded store gets a knowledge base of --patterns learned patterns and a
server-held session, then ghz sends --calls Predicts on it from --concurrency workers,
once without a deadline and once with --deadline. Each run prints the outcome of every
call by status code, the goodput (served calls per second), the fraction shed
(RESOURCE_EXHAUSTED), the p50 / p99 latency of the served calls, and the server log's
ERROR and traceback lines (there should be none). Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "clients" / "python")]

from kato_client import KatoClient  # noqa: E402

from tests.support.server import ServerProcess, find_tool  # noqa: E402


def seed(target: str, patterns: int) -> str:
    """Learn `patterns` two-event patterns; a server-held session with a two-event STM."""
    rnd = random.Random(1)
    with KatoClient(target) as kato:
        session = kato.session("overload")
        for _ in range(patterns):
            session.observe([f"s{rnd.randrange(300)}" for _ in range(5)])
            session.observe([f"s{rnd.randrange(300)}" for _ in range(5)])
            session.learn()
        held = kato.server_session("overload")
        held.observe(["s1", "s2", "s3"])
        held.observe(["s4", "s5"])
        return held.session_id


def quantile(values: list[float], q: float) -> float:
    return values[min(int(q * len(values)), len(values) - 1)] if values else float("nan")


def run(ghz: str, target: str, session_id: str, concurrency: int, calls: int, deadline: str) -> None:
    command = [ghz, "--insecure", "--call", "kato.v1.KatoService/Predict", "-d", json.dumps({"session_id": session_id})]
    command += ["-c", str(concurrency), "-n", str(calls), "-O", "json", "--timeout", deadline or "0", target]
    report = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
    outcomes = collections.Counter(detail["status"] for detail in report["details"])
    served = sorted(detail["latency"] / 1e6 for detail in report["details"] if detail["status"] == "OK")
    seconds = report["total"] / 1e9
    shed = outcomes.get("ResourceExhausted", 0) / max(sum(outcomes.values()), 1)
    print(f"deadline {deadline or 'none'}: {dict(sorted(outcomes.items()))}")
    print(
        f"  goodput {len(served) / seconds:.0f} served/s, shed {shed:.0%},"
        f" served p50 {quantile(served, 0.5):.0f} ms, p99 {quantile(served, 0.99):.0f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patterns", type=int, default=1500)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--deadline", default="500ms")
    parser.add_argument("--server-flag", action="append", default=[], help="extra flag for kato-grpc serve")
    args = parser.parse_args()
    ghz = find_tool("ghz")
    if ghz is None:
        sys.exit("ghz not found: go install github.com/bojand/ghz/cmd/ghz@latest")
    flags = [part for flag in args.server_flag for part in flag.split("=", 1)]
    server = ServerProcess(["--data-dir", tempfile.mkdtemp(prefix="kato-overload-"), *flags]).start()
    try:
        session_id = seed(server.target, args.patterns)
        for deadline in ("", args.deadline):
            run(ghz, server.target, session_id, args.concurrency, args.calls, deadline)
    finally:
        server.stop()
    log = "".join(server.output)
    print(f"server log: {log.count(' ERROR ')} ERROR lines, {log.count('Traceback')} tracebacks")


if __name__ == "__main__":
    main()
