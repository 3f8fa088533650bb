"""A tiny driver over the pure core for unit tests: one session, one in-memory KB."""

from __future__ import annotations

from kato_grpc.core import engine
from kato_grpc.core.knowledge import MemoryKnowledgeBase
from kato_grpc.core.model import Observation


class CoreSession:
    def __init__(self, kb: MemoryKnowledgeBase | None = None, **config):
        self.kb = kb if kb is not None else MemoryKnowledgeBase()
        self.state = engine.new_session("test", config)

    def _commit(self, outcome):
        for effect in outcome.effects:
            self.kb.apply(effect)
        self.state = outcome.state
        return outcome.result

    def observe(self, *strings, **fields):
        return self._commit(engine.observe(self.state, Observation(strings=tuple(strings), **fields), self.kb))

    def observe_each(self, *symbols, **fields):
        for symbol in symbols:
            self.observe(symbol, **fields)

    def learn(self):
        return self._commit(engine.learn(self.state))

    def learn_events(self, *events):
        for event in events:
            self.observe(*event)
        name = self.learn()
        self.clear()
        return name

    def clear(self):
        self.state = engine.clear_stm(self.state)

    def predict(self):
        return engine.predict(self.state, self.kb)

    def by_prefix(self, prefix):
        (found,) = [p for p in self.predict().predictions if p.name.startswith(prefix)]
        return found
