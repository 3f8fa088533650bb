"""Bytes per call by `max_predictions` and `recall_threshold`, measured on a real server:
the table of README's "What a call costs".

    .venv/bin/python docs/call_cost.py

A knowledge base of 2,000 patterns (5 one-symbol events each, over 1,000 symbols, from a
fixed seed: the dense shape of loadtest/report.md at a fifth of its size) is learned once;
then a client-held session holding the first 3 events of a stored pattern observes its
4th with return_predictions, under each configuration. The sizes are of the serialized
messages, so they are the same on every machine.
"""

from __future__ import annotations

import random
import sys
import tempfile
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parents[1] / "clients/python")]

from kato_client import KatoClient  # noqa: E402

from tests.support.server import ServerProcess  # noqa: E402

PATTERNS, SYMBOLS, LENGTH = 2000, 1000, 5


def main() -> None:
    rng = random.Random(7)
    patterns = [[f"s{rng.randrange(SYMBOLS)}" for _ in range(LENGTH)] for _ in range(PATTERNS)]
    with tempfile.TemporaryDirectory() as data:
        server = ServerProcess(["--data-dir", data]).start()
        try:
            with KatoClient(server.target, timeout=120) as kato:
                for events in patterns:
                    kato.session("cost").observe_sequence([{"strings": [s]} for s in events], learn_at_end=True)
                probe = patterns[0]
                columns = ("max_predictions", "recall_threshold", "predictions", "Observe response", "state sent next")
                print("| " + " | ".join((*columns, "Predict response")) + " |")
                print("|--:|--:|--:|--:|--:|--:|")
                for max_predictions in (1, 10, 100):
                    for threshold in (0.1, 0.3):
                        session = kato.session(
                            "cost", {"max_predictions": max_predictions, "recall_threshold": threshold}
                        )
                        for symbol in probe[:3]:
                            session.observe([symbol])
                        observed = session.observe([probe[3]], return_predictions=True)
                        predicted = session.predict()
                        print(
                            f"| {max_predictions} | {threshold} | {len(observed.predictions)}"
                            f" | {observed.ByteSize():,} B | {session.state.ByteSize():,} B"
                            f" | {predicted.ByteSize():,} B |"
                        )
        finally:
            server.stop()


if __name__ == "__main__":
    main()
