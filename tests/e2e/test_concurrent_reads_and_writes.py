"""Engine reads and knowledge-base writes of one KB run on different threads now: calls
racing on one KB all succeed, and afterwards the KB holds exactly what was learned."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import grpc

from kato_grpc._proto.kato.v1 import kato_service_pb2 as api
from kato_grpc._proto.kato.v1 import kato_service_pb2_grpc as api_grpc
from kato_grpc._proto.kato.v1 import types_pb2 as pb


def test_learns_and_predicts_racing_on_one_kb_all_succeed(kato_server, kb_id):
    def state(*events: list[str]) -> pb.SessionState:
        """A hand-made state with an STM, signed as one the server returned would be."""
        return kato_server.sign(pb.SessionState(kb_id=kb_id, stm=[pb.Event(symbols=e) for e in events]))

    with grpc.insecure_channel(kato_server.target) as channel:
        stub = api_grpc.KatoServiceStub(channel)

        def learn(i: int) -> str:
            return stub.Learn(
                api.LearnRequest(state=state([f"s{i % 7}"], [f"t{i}"], [f"u{i % 5}"])), timeout=60
            ).pattern_name

        def predict(i: int) -> int:
            return len(stub.Predict(api.PredictRequest(state=state([f"s{i % 7}"], [f"t{i}"])), timeout=60).predictions)

        def observe(i: int) -> int:
            observed = stub.Observe(
                api.ObserveRequest(
                    state=state([f"s{i % 7}"]), observation=pb.Observation(strings=[f"t{i}"]), return_predictions=True
                ),
                timeout=60,
            )
            return len(observed.predictions)

        with ThreadPoolExecutor(12) as pool:
            calls = [pool.submit(learn, i) for i in range(120)]
            calls += [pool.submit(predict, i) for i in range(120)]
            calls += [pool.submit(observe, i) for i in range(120)]
            results = [call.result() for call in calls]
        learned = set(results[:120])
        listed = stub.ListPatterns(api.ListPatternsRequest(kb_id=kb_id, page_size=1000), timeout=60).patterns
        assert {p.name for p in listed} == learned and len(learned) == 120
        assert all(p.frequency == 1 for p in listed)
        # Once the writes are done, every Predict finds its own pattern.
        assert all(predict(i) >= 1 for i in range(0, 120, 10))
