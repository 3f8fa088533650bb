"""A scripted KATO session that prints every response as the hex of its deterministic bytes.

    python -m tests.e2e.determinism_script core        # pure core + proto conversion, in process
    python -m tests.e2e.determinism_script HOST:PORT   # the same requests through a server

tests/e2e/test_determinism.py runs it under different PYTHONHASHSEEDs and compares the
output byte for byte (SPEC.md §8). The script mixes what could leak an unordered
container into an output: many-symbol events given in scrambled order, emotives,
metadata of mixed types, vectors and their nearest neighbours, patterns that tie on
every metric, auto-learn, fuzzy tokens, affinity and several rank keys.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import grpc
from google.protobuf.message import Message
from kato_client.client import config_message, observation

from kato_grpc._proto.kato.v1 import kato_service_pb2 as api
from kato_grpc._proto.kato.v1 import kato_service_pb2_grpc as api_grpc
from kato_grpc._proto.kato.v1 import types_pb2 as pb
from kato_grpc.core import engine
from kato_grpc.core.knowledge import MemoryKnowledgeBase
from kato_grpc.core.model import Outcome
from kato_grpc.server import convert

KB_ID = "determinism"
SCRAMBLED = [f"sym{(i * 7) % 23:02d}" for i in range(23)]  # every symbol once, not in order


def observe(*strings: str, **fields: Any) -> api.ObserveRequest:
    return_predictions = fields.pop("return_predictions", True)
    return api.ObserveRequest(observation=observation(strings, **fields), return_predictions=return_predictions)


def configure(**config: Any) -> api.UpdateConfigRequest:
    return api.UpdateConfigRequest(config=config_message(config))


def script() -> list[Message]:
    """The requests, without their session (the runner adds state or session_id)."""
    learn, predict = api.LearnRequest(), api.PredictRequest()
    return [
        configure(recall_threshold=0.05, max_predictions=20, persistence=3),
        # two patterns that differ only in their last event tie on every metric: ranked by name
        observe("t1"),
        observe("t2"),
        observe("x"),
        learn,
        observe("t1"),
        observe("t2"),
        observe("y"),
        learn,
        observe("t1"),
        observe("t2"),
        predict,
        api.ClearStmRequest(),
        # many-symbol events in scrambled orders, emotives, metadata, vectors
        observe("a", emotives={"joy": 0.5, "fear": 0.25}, metadata={"source": "one", "tags": ["y", "x"]}),
        observe(*SCRAMBLED, vectors=[[0.1, 0.2, 0.3]]),
        observe("c", metadata={"mixed": [1, 2.5, True, None, "s"], "source": "one"}),
        learn,
        observe("a", emotives={"fear": 1.0, "joy": 0.75}),
        observe(*reversed(SCRAMBLED), vectors=[[0.1, 0.2, 0.31]]),
        observe("d", metadata={"source": "two"}),
        learn,
        observe("a"),
        observe(*SCRAMBLED[::2], vectors=[[0.1, 0.2, 0.3]]),
        predict,
        observe("b", "a"),
        learn,
        api.ObserveSequenceRequest(
            observations=[
                observation(["e", "a"], emotives={"joy": 1.0}),
                observation(["f"]),
                observation(["a"], vectors=[[0.3, 0.2, 0.1]]),
                observation(["g", *SCRAMBLED[:5]]),
            ],
            learn_after_each=True,
            learn_at_end=True,
        ),
        observe("a"),
        observe(*SCRAMBLED[3:9]),
        predict,
        configure(rank_sort_algo="frequency", affinity_emotive="joy"),
        predict,
        configure(fuzzy_token_threshold=0.5, rank_sort_algo="weighted_similarity"),
        observe("sym0x", "c"),
        predict,
        api.ClearStmRequest(),
        configure(max_pattern_length=3, stm_mode="ROLLING", fuzzy_token_threshold=0.0),
        observe("a", emotives={"joy": 0.1}),
        observe("c"),
        observe("d", metadata={"k": "v"}),  # auto-learns [[a],[c],[d]], keeps the tail
        observe("a"),
        predict,
    ]


def run_core(requests: list[Message]) -> Iterator[Message]:
    """Each request through `convert` and the pure core, on an in-memory KB."""
    kb = MemoryKnowledgeBase()
    state = pb.SessionState(kb_id=KB_ID)
    for request in requests:
        current = convert.state_from_proto(state)
        if isinstance(request, api.ObserveRequest):
            outcome = engine.observe(current, convert.observation_from_proto(request.observation), kb)
            r = outcome.result
            response = api.ObserveResponse(
                stm_length=r.stm_length, time=r.time, unique_id=r.unique_id, auto_learned_pattern=r.auto_learned_pattern
            )
            convert.predictions_to_proto(r.predictions, response, "predictions")
            convert.future_potentials_to_proto(r.future_potentials, response, "future_potentials")
        elif isinstance(request, api.ObserveSequenceRequest):
            outcome = engine.observe_sequence(
                current,
                [convert.observation_from_proto(o) for o in request.observations],
                kb,
                learn_after_each=request.learn_after_each,
                learn_at_end=request.learn_at_end,
            )
            r = outcome.result
            response = api.ObserveSequenceResponse(
                observations_processed=r.observations_processed,
                initial_stm_length=r.initial_stm_length,
                final_stm_length=r.final_stm_length,
                auto_learned_patterns=list(r.auto_learned_patterns),
                final_learned_pattern=r.final_learned_pattern,
            )
            for item in r.results:
                response.results.add(
                    sequence_position=item.sequence_position,
                    stm_length=item.stm_length,
                    time=item.time,
                    unique_id=item.unique_id,
                    auto_learned_pattern=item.auto_learned_pattern,
                )
        elif isinstance(request, api.LearnRequest):
            outcome = engine.learn(current)
            response = api.LearnResponse(pattern_name=outcome.result)
        elif isinstance(request, api.PredictRequest):
            result = engine.predict(current, kb)
            response = api.PredictResponse()
            convert.predictions_to_proto(result.predictions, response, "predictions")
            convert.future_potentials_to_proto(result.future_potentials, response, "future_potentials")
            yield response
            continue
        elif isinstance(request, api.UpdateConfigRequest):
            outcome = Outcome(state=engine.update_config(current, convert.overrides_from_proto(request.config)))
            response = api.UpdateConfigResponse()
            convert.config_to_proto(outcome.state.config, response.config)
        elif isinstance(request, api.ClearStmRequest):
            outcome = Outcome(state=engine.clear_stm(current))
            response = api.ClearStmResponse()
        else:  # pragma: no cover
            raise TypeError(request)
        for effect in outcome.effects:
            kb.apply(effect)
        convert.state_to_proto(outcome.state, response.state)
        state = response.state
        yield response
    for record in kb.list_patterns():
        yield convert.pattern_to_proto(record)


METHODS = {
    api.ObserveRequest: "Observe",
    api.ObserveSequenceRequest: "ObserveSequence",
    api.LearnRequest: "Learn",
    api.PredictRequest: "Predict",
    api.UpdateConfigRequest: "UpdateConfig",
    api.ClearStmRequest: "ClearStm",
}


def run_server(target: str, requests: list[Message]) -> Iterator[Message]:
    """The requests through a server: client-held state, then a server-held session, then the KBs."""
    with grpc.insecure_channel(target) as channel:
        stub = api_grpc.KatoServiceStub(channel)
        state = pb.SessionState(kb_id=KB_ID)
        for request in requests:
            sent = type(request)()
            sent.CopyFrom(request)
            sent.state.CopyFrom(state)
            response = getattr(stub, METHODS[type(request)])(sent, timeout=60)
            if "state" in response.DESCRIPTOR.fields_by_name:
                state = response.state
            yield response
        # its id and expiry are not deterministic, so the CreateSession response is not printed
        session_id = stub.CreateSession(api.CreateSessionRequest(kb_id=KB_ID + "-held"), timeout=60).session.session_id
        for request in requests:
            sent = type(request)()
            sent.CopyFrom(request)
            sent.session_id = session_id
            if isinstance(request, api.UpdateConfigRequest):
                yield stub.UpdateSessionConfig(
                    api.UpdateSessionConfigRequest(session_id=session_id, config=request.config), timeout=60
                )
            else:
                yield getattr(stub, METHODS[type(request)])(sent, timeout=60)
        for kb_id in (KB_ID, KB_ID + "-held"):
            yield stub.ListPatterns(api.ListPatternsRequest(kb_id=kb_id, page_size=1000), timeout=60)
            yield stub.GetSymbolStats(api.GetSymbolStatsRequest(kb_id=kb_id), timeout=60)
            yield stub.GetSymbolAffinity(api.GetSymbolAffinityRequest(kb_id=kb_id), timeout=60)


def main(where: str) -> None:
    responses = run_core(script()) if where == "core" else run_server(where, script())
    for response in responses:
        print(type(response).__name__, response.SerializeToString(deterministic=True).hex())


if __name__ == "__main__":
    main(sys.argv[1])
