"""`KatoClient` over the generated stubs, and session objects that thread the state."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import grpc

from kato_client._proto.kato.v1 import kato_service_pb2 as api
from kato_client._proto.kato.v1 import kato_service_pb2_grpc as api_grpc
from kato_client._proto.kato.v1 import types_pb2 as pb
from kato_client.errors import KatoClientError, from_rpc_error
from kato_client.pages import Pager
from kato_client.retry import Retry, retry_target

__all__ = ["IDEMPOTENT_METHODS", "KatoClient", "ServerSession", "Session", "new_request_id", "observation"]

IDEMPOTENT_METHODS = frozenset(
    {
        "Predict",
        "GetStm",
        "GetPerceptData",
        "GetCognitionData",
        "GetConfig",
        "GetPattern",
        "ListPatterns",
        "ListKnowledgeBases",
        "GetSymbolStats",
        "GetSymbolAffinity",
        "ClearKnowledgeBase",
        "FinalizeTraining",
        "GetSession",
        "SessionExists",
    }
)
"""RPCs that change nothing, or end in the same state however often they run: the
client retries them. Observe, ObserveSequence and Learn are retried only on a
server-held session, with a `request_id` (see `ServerSession`)."""


def new_request_id() -> str:
    """A fresh `request_id` (AIP-155 recommends a UUID4)."""
    return str(uuid.uuid4())


def observation(
    strings: Sequence[str] = (),
    vectors: Sequence[Sequence[float]] = (),
    emotives: Mapping[str, float] | None = None,
    metadata: Mapping[str, Any] | None = None,
    unique_id: str = "",
) -> pb.Observation:
    """Build an `Observation` message from plain Python values."""
    msg = pb.Observation(strings=list(strings), emotives=dict(emotives or {}), unique_id=unique_id)
    for vector in vectors:
        msg.vectors.add(values=list(vector))
    if metadata:
        msg.metadata.update(dict(metadata))
    return msg


def config_message(config: Mapping[str, Any] | pb.SessionConfig | None) -> pb.SessionConfig:
    """A `SessionConfig` from a dict of overrides (only the given keys are present)."""
    if isinstance(config, pb.SessionConfig):
        return config
    msg = pb.SessionConfig()
    for key, value in (config or {}).items():
        if key == "filter_pipeline":
            msg.filter_pipeline.SetInParent()
            msg.filter_pipeline.values.extend(value)
        else:
            setattr(msg, key, value)
    return msg


class KatoClient:
    """A connection to a KATO gRPC server. Use as a context manager or call `close()`.

    `timeout` bounds each attempt (seconds, None: no bound). `retry` is the policy for
    calls safe to repeat (UNAVAILABLE and ABORTED, back-off with jitter, one deadline for
    all attempts; RESOURCE_EXHAUSTED too when it carries a RetryInfo, waiting at least its
    delay); `retry=None` makes every call a single attempt.
    """

    def __init__(
        self,
        target: str,
        *,
        channel: grpc.Channel | None = None,
        timeout: float | None = 30.0,
        metadata: Sequence[tuple[str, str]] = (),
        retry: Retry | None = Retry(),
    ) -> None:
        self._channel = channel or grpc.insecure_channel(target)
        self.stub = api_grpc.KatoServiceStub(self._channel)
        self.timeout = timeout
        self.metadata = tuple(metadata)
        self.retry = retry

    def __enter__(self) -> KatoClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def call(self, method: str, request: Any, *, safe_to_retry: bool = False) -> Any:
        """Invokes an RPC by name; a failure raises its `KatoClientError` subclass.

        The call is retried under `self.retry` when `method` is in `IDEMPOTENT_METHODS` or
        the caller says repeating it is `safe_to_retry` (a request with a `request_id`).
        """
        rpc = getattr(self.stub, method)
        policy = self.retry if safe_to_retry or method in IDEMPOTENT_METHODS else None
        if policy is None:
            return self._attempt(rpc, request, self.timeout)
        give_up_at = time.monotonic() + policy.deadline

        def attempt() -> Any:
            remaining = max(give_up_at - time.monotonic(), 0.0)
            return self._attempt(rpc, request, remaining if self.timeout is None else min(self.timeout, remaining))

        def retryable(error: Exception) -> bool:
            if not isinstance(error, KatoClientError):
                return False
            # Shed by a busy server (it says when to come back): nothing was applied.
            shed = error.code is grpc.StatusCode.RESOURCE_EXHAUSTED and error.retry_delay is not None
            return shed or error.code in policy.codes

        def server_delay(error: Exception) -> float:
            return getattr(error, "retry_delay", None) or 0.0

        return retry_target(attempt, retryable, policy.delays(), policy.deadline, at_least=server_delay)

    def _attempt(self, rpc: Any, request: Any, timeout: float | None) -> Any:
        try:
            return rpc(request, timeout=timeout, metadata=self.metadata or None)
        except grpc.RpcError as error:
            raise from_rpc_error(error) from error

    # --- sessions ------------------------------------------------------------------------
    def session(self, kb_id: str, config: Mapping[str, Any] | None = None) -> Session:
        """A client-held session: the state lives in the returned object."""
        state = pb.SessionState(kb_id=kb_id)
        if config:
            state = self.call("UpdateConfig", api.UpdateConfigRequest(state=state, config=config_message(config))).state
        return Session(self, state)

    def server_session(
        self,
        kb_id: str,
        config: Mapping[str, Any] | None = None,
        ttl_seconds: int | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> ServerSession:
        """A server-held session (CreateSession); calls carry only its id."""
        request = api.CreateSessionRequest(kb_id=kb_id)
        if config:
            request.config.CopyFrom(config_message(config))
        if ttl_seconds is not None:
            request.ttl_seconds = ttl_seconds
        if metadata:
            request.metadata.update(dict(metadata))
        created = self.call("CreateSession", request).session
        return ServerSession(self, created.session_id, created)

    # --- knowledge base ---------------------------------------------------------------
    def get_pattern(self, kb_id: str, name: str) -> pb.Pattern:
        return self.call("GetPattern", api.GetPatternRequest(kb_id=kb_id, name=name)).pattern

    def list_patterns(self, kb_id: str, page_size: int = 0) -> Pager[api.ListPatternsResponse, pb.Pattern]:
        """Every pattern of the KB in name order, fetched a page at a time as you iterate;
        `.pages` gives the responses instead. Each page is retried on its own."""

        def fetch(page_token: str) -> api.ListPatternsResponse:
            request = api.ListPatternsRequest(kb_id=kb_id, page_size=page_size, page_token=page_token)
            response: api.ListPatternsResponse = self.call("ListPatterns", request)
            return response

        return Pager(fetch, lambda page: page.patterns)

    def list_knowledge_bases(self, page_size: int = 0) -> Pager[api.ListKnowledgeBasesResponse, api.KnowledgeBase]:
        """Every knowledge base holding a pattern, in kb_id order, a page at a time."""

        def fetch(page_token: str) -> api.ListKnowledgeBasesResponse:
            request = api.ListKnowledgeBasesRequest(page_size=page_size, page_token=page_token)
            response: api.ListKnowledgeBasesResponse = self.call("ListKnowledgeBases", request)
            return response

        return Pager(fetch, lambda page: page.knowledge_bases)

    def update_pattern(
        self,
        kb_id: str,
        name: str,
        *,
        frequency: int | None = None,
        emotives: Sequence[Mapping[str, float]] | None = None,
        metadata: Mapping[str, Sequence[str]] | None = None,
    ) -> pb.Pattern:
        request = api.UpdatePatternRequest(kb_id=kb_id, name=name)
        if frequency is not None:
            request.frequency = frequency
            request.update_mask.paths.append("frequency")
        if emotives is not None:
            for entry in emotives:
                request.emotives.add(values=dict(entry))
            request.update_mask.paths.append("emotives")
        if metadata is not None:
            for key, values in metadata.items():
                request.metadata[key].values.extend(values)
            request.update_mask.paths.append("metadata")
        return self.call("UpdatePattern", request).pattern

    def delete_pattern(self, kb_id: str, name: str) -> None:
        self.call("DeletePattern", api.DeletePatternRequest(kb_id=kb_id, name=name))

    def symbol_stats(self, kb_id: str) -> api.GetSymbolStatsResponse:
        return self.call("GetSymbolStats", api.GetSymbolStatsRequest(kb_id=kb_id))

    def symbol_affinity(self, kb_id: str, symbol: str | None = None) -> dict[str, dict[str, float]]:
        request = api.GetSymbolAffinityRequest(kb_id=kb_id)
        if symbol is not None:
            request.symbol = symbol
        response = self.call("GetSymbolAffinity", request)
        return {a.symbol: dict(sorted(a.affinities.items())) for a in response.symbol_affinities}

    def stream(
        self, session: Session | ServerSession, steps: Iterable[pb.Observation | str], return_predictions: bool = False
    ) -> Iterator[api.StreamObservationsResponse]:
        """Feed `steps` (observations, or the strings "learn" / "clear_stm") through one
        StreamObservations call; yields each answer as it arrives. A client-held
        `session` gets the final state when the stream ends."""
        opened = api.StreamOpen(return_predictions=return_predictions)
        if isinstance(session, Session):
            opened.state.CopyFrom(session.state)
        else:
            opened.session_id = session.session_id

        def requests() -> Iterator[api.StreamObservationsRequest]:
            yield api.StreamObservationsRequest(open=opened)
            for step in steps:
                if isinstance(step, pb.Observation):
                    yield api.StreamObservationsRequest(observation=step)
                elif step == "learn":
                    yield api.StreamObservationsRequest(learn=api.StreamLearn())
                elif step == "clear_stm":
                    yield api.StreamObservationsRequest(clear_stm=api.StreamClearStm())
                else:
                    raise ValueError(f"unknown stream step {step!r}")

        try:
            for answer in self.stub.StreamObservations(
                requests(), timeout=self.timeout, metadata=self.metadata or None
            ):
                if answer.HasField("closed") and isinstance(session, Session):
                    session.state = answer.closed.state
                yield answer
        except grpc.RpcError as error:
            raise from_rpc_error(error) from error

    def clear_knowledge_base(self, kb_id: str) -> None:
        self.call("ClearKnowledgeBase", api.ClearKnowledgeBaseRequest(kb_id=kb_id))

    def session_exists(self, session_id: str) -> api.SessionExistsResponse:
        return self.call("SessionExists", api.SessionExistsRequest(session_id=session_id))


class _SessionCalls:
    """Session RPCs shared by client-held and server-held sessions."""

    client: KatoClient

    def _request(self, cls: Any, **fields: Any) -> Any:
        raise NotImplementedError

    def _keep(self, response: Any) -> Any:
        return response

    def _write(self, method: str, cls: Any, request_id: str, **fields: Any) -> Any:
        """Observe, ObserveSequence or Learn; a server-held session retries them (see there)."""
        return self._keep(self.client.call(method, self._request(cls, request_id=request_id, **fields)))

    def observe(
        self,
        strings: Sequence[str] = (),
        *,
        vectors: Sequence[Sequence[float]] = (),
        emotives: Mapping[str, float] | None = None,
        metadata: Mapping[str, Any] | None = None,
        unique_id: str = "",
        return_predictions: bool = False,
        max_predictions: int = 0,
        prediction_view: pb.PredictionView.ValueType = pb.PREDICTION_VIEW_UNSPECIFIED,
        request_id: str = "",
    ) -> api.ObserveResponse:
        """Observe; with `return_predictions`, at most `max_predictions` (0: all) come back,
        each as much as `prediction_view` says (BASIC: name, frequency, future, potential)."""
        obs = observation(strings, vectors, emotives, metadata, unique_id)
        response: api.ObserveResponse = self._write(
            "Observe",
            api.ObserveRequest,
            request_id,
            observation=obs,
            return_predictions=return_predictions,
            max_predictions=max_predictions,
            prediction_view=prediction_view,
        )
        return response

    def observe_sequence(
        self,
        observations: Sequence[pb.Observation | Mapping[str, Any]],
        *,
        learn_after_each: bool = False,
        learn_at_end: bool = False,
        clear_stm_between: bool = False,
        request_id: str = "",
    ) -> api.ObserveSequenceResponse:
        items = [o if isinstance(o, pb.Observation) else observation(**o) for o in observations]
        response: api.ObserveSequenceResponse = self._write(
            "ObserveSequence",
            api.ObserveSequenceRequest,
            request_id,
            observations=items,
            learn_after_each=learn_after_each,
            learn_at_end=learn_at_end,
            clear_stm_between=clear_stm_between,
        )
        return response

    def learn(self, request_id: str = "") -> str:
        """Learn the STM; returns ``PTRN|<name>`` or "" when fewer than 2 symbols were stored."""
        response: api.LearnResponse = self._write("Learn", api.LearnRequest, request_id)
        return response.pattern_name

    def predict(
        self, max_predictions: int = 0, prediction_view: pb.PredictionView.ValueType = pb.PREDICTION_VIEW_UNSPECIFIED
    ) -> api.PredictResponse:
        request = self._request(api.PredictRequest, max_predictions=max_predictions, prediction_view=prediction_view)
        return self.client.call("Predict", request)

    def clear_stm(self) -> None:
        self._keep(self.client.call("ClearStm", self._request(api.ClearStmRequest)))

    def clear_all(self) -> None:
        self._keep(self.client.call("ClearAll", self._request(api.ClearAllRequest)))

    def stm(self) -> list[list[str]]:
        return [list(e.symbols) for e in self.client.call("GetStm", self._request(api.GetStmRequest)).stm]

    def percept(self) -> pb.Percept:
        return self.client.call("GetPerceptData", self._request(api.GetPerceptDataRequest)).percept

    def cognition(self) -> api.GetCognitionDataResponse:
        return self.client.call("GetCognitionData", self._request(api.GetCognitionDataRequest))

    def config(self) -> pb.SessionConfig:
        return self.client.call("GetConfig", self._request(api.GetConfigRequest)).config

    def configure(self, config: Mapping[str, Any] | pb.SessionConfig) -> pb.SessionConfig:
        return self._keep(
            self.client.call("UpdateConfig", self._request(api.UpdateConfigRequest, config=config_message(config)))
        ).config


class Session(_SessionCalls):
    """A client-held session: every call sends `state` and keeps the one returned.

    Its Observe, ObserveSequence and Learn are not retried: the server ignores a
    `request_id` for client-held state, and a repeated learn would count twice.
    """

    def __init__(self, client: KatoClient, state: pb.SessionState) -> None:
        self.client = client
        self.state = state

    @property
    def kb_id(self) -> str:
        return self.state.kb_id

    def _request(self, cls: Any, **fields: Any) -> Any:
        return cls(state=self.state, **fields)

    def _keep(self, response: Any) -> Any:
        if response.HasField("state"):
            self.state = response.state
        return response


class ServerSession(_SessionCalls):
    """A server-held session: calls carry `session_id`; the state lives on the server.

    Observe, ObserveSequence and Learn carry a `request_id` (yours, or a fresh UUID4)
    and are retried with it: the server answers an id it has seen with the first response
    (it remembers a session's last 16).
    """

    def __init__(self, client: KatoClient, session_id: str, info: pb.Session | None = None) -> None:
        self.client = client
        self.session_id = session_id
        self.info = info

    def _request(self, cls: Any, **fields: Any) -> Any:
        return cls(session_id=self.session_id, **fields)

    def _write(self, method: str, cls: Any, request_id: str, **fields: Any) -> Any:
        # The server answers a request_id it has seen with the first response, so the call
        # is safe to retry: one id, chosen here unless given, for all its attempts.
        request = self._request(cls, request_id=request_id or new_request_id(), **fields)
        return self.client.call(method, request, safe_to_retry=True)

    def extend(self, ttl_seconds: int) -> pb.Session:
        return self.client.call(
            "ExtendSession", api.ExtendSessionRequest(session_id=self.session_id, ttl_seconds=ttl_seconds)
        ).session

    def info_now(self) -> pb.Session:
        return self.client.call("GetSession", api.GetSessionRequest(session_id=self.session_id)).session

    def exists(self) -> api.SessionExistsResponse:
        return self.client.session_exists(self.session_id)

    def delete(self) -> None:
        self.client.call("DeleteSession", api.DeleteSessionRequest(session_id=self.session_id))

    def configure(self, config: Mapping[str, Any] | pb.SessionConfig) -> pb.SessionConfig:
        return self.client.call(
            "UpdateSessionConfig",
            api.UpdateSessionConfigRequest(session_id=self.session_id, config=config_message(config)),
        ).config
