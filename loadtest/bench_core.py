"""Benchmark of the engine's hot path, in process: Observe (with and without predictions)
and Predict on knowledge bases of growing size, through the pure core and the protobuf
conversions the servicer does. Prints medians of several rounds; asserts nothing.

    python loadtest/bench_core.py [--sizes 1000 10000] [--rounds 5] [--calls 200]
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import statistics
import time

from kato_grpc._proto.kato.v1 import kato_service_pb2 as api
from kato_grpc.core import engine
from kato_grpc.core.knowledge import MemoryKnowledgeBase
from kato_grpc.core.learning import pattern_name
from kato_grpc.core.model import LearnPattern, Observation
from kato_grpc.server import convert


def build_kb(size: int, vocabulary: int, rng: random.Random) -> MemoryKnowledgeBase:
    kb = MemoryKnowledgeBase()
    words = [f"w{i}" for i in range(vocabulary)]
    for _ in range(size):
        events = tuple((rng.choice(words),) for _ in range(5))
        kb.apply(LearnPattern(pattern_name(events), events, (), (), 5))
    return kb


def observe_call(state_msg, word: str, kb) -> bytes:
    """What the servicer does for one client-held Observe: decode, core, encode."""
    request = api.ObserveRequest(state=state_msg, observation={"strings": [word]})
    data = request.SerializeToString()
    request = api.ObserveRequest.FromString(data)
    state = convert.state_from_proto(request.state)
    outcome = engine.observe(state, convert.observation_from_proto(request.observation), kb)
    response = api.ObserveResponse(stm_length=outcome.result.stm_length, time=outcome.result.time)
    convert.state_to_proto(outcome.state, response.state)  # the state carries no predictions
    return response.SerializeToString()


def per_call_us(fn, calls: int) -> float:
    start = time.perf_counter()
    for i in range(calls):
        fn(i)
    return (time.perf_counter() - start) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--vocabulary", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    rng = random.Random(7)
    print(
        f"{'patterns':>9} {'observe(no pred) µs':>20} {'observe(pred) µs':>17} {'predict µs':>11} {'predictions':>11}"
    )
    for size in args.sizes:
        kb = build_kb(size, args.vocabulary, rng)
        words = [f"w{rng.randrange(args.vocabulary)}" for _ in range(args.calls)]
        base = engine.new_session("bench")
        for word in words[:5]:
            base = engine.observe(base, Observation(strings=(word,)), kb).state
        quiet_state = engine.update_config(base, {"process_predictions": False})
        quiet = convert.state_to_proto(dataclasses.replace(quiet_state, cognition_stm=None))
        loud = convert.state_to_proto(base)
        rounds = {"quiet": [], "loud": [], "predict": []}
        for _ in range(args.rounds):
            rounds["quiet"].append(per_call_us(lambda i: observe_call(quiet, words[i], kb), args.calls))
            rounds["loud"].append(per_call_us(lambda i: observe_call(loud, words[i], kb), args.calls // 4 or 1))
            rounds["predict"].append(per_call_us(lambda i: engine.predict(base, kb), args.calls // 4 or 1))
        count = len(engine.predict(base, kb).predictions)
        print(
            f"{size:>9} {statistics.median(rounds['quiet']):>20.0f} {statistics.median(rounds['loud']):>17.0f}"
            f" {statistics.median(rounds['predict']):>11.0f} {count:>11}"
        )


if __name__ == "__main__":
    main()
