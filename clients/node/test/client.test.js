'use strict';
// The client against real servers (test/server.js): both kinds of session,
// the stream, pages, typed errors and a retry across a server restart.

const assert = require('node:assert/strict');
const { test, before, after } = require('node:test');
const { KatoClient, KatoError, grpc, serviceConfig, DEFAULT_RETRY } = require('..');
const { startServer, needServer } = require('./server');

let shared;
let n = 0;
const freshKb = (name) => `node-${name}-${Date.now()}-${(n += 1)}`;
const opts = needServer();

before(async () => {
  if (!opts.skip) shared = await startServer();
});
after(async () => {
  if (shared) await shared.stop();
});

/** Learns hello world / how / are you, then observes the start again; resolves with the name. */
async function teach(session) {
  for (const event of [['hello', 'world'], ['how'], ['are', 'you']]) await session.observe(event);
  const name = await session.learn();
  assert.match(name, /^PTRN\|[0-9a-f]{40}$/);
  await session.observe(['hello', 'world']);
  await session.observe(['how']);
  return name;
}

function assertFuture(predicted, name) {
  assert.ok(predicted.predictions.length > 0, 'no predictions');
  const [best] = predicted.predictions;
  assert.equal(`PTRN|${best.name.replace(/^PTRN\|/, '')}`, name);
  assert.deepEqual(best.future.map((e) => e.symbols), [['are', 'you']]);
}

test('a client-held session threads its state', opts, async () => {
  const kato = new KatoClient(shared.target);
  try {
    const session = kato.session(freshKb('client'));
    const name = await teach(session);
    assert.deepEqual(await session.stm(), [['hello', 'world'], ['how']]);
    assertFuture(await session.predict(), name);
    // A saved state resumes the same session.
    const resumed = kato.session(structuredClone(session.state));
    assertFuture(await resumed.predict(), name);
    await resumed.clearStm();
    assert.deepEqual(await resumed.stm(), []);
  } finally {
    kato.close();
  }
});

test('a server-held session', opts, async () => {
  const kato = new KatoClient(shared.target);
  try {
    const session = await kato.createSession(freshKb('server'), { ttlSeconds: 600, metadata: { owner: 'node-test' } });
    const name = await teach(session);
    assertFuture(await session.predict(), name);
    const info = await session.get();
    assert.equal(info.session_id, session.sessionId);
    assert.equal((await session.configure({ max_predictions: 3 })).max_predictions, 3);
    await session.delete();
    await assert.rejects(session.predict(), (err) => {
      assert.ok(err instanceof KatoError);
      assert.equal(err.code, grpc.status.NOT_FOUND);
      assert.equal(err.reason, 'SESSION_NOT_FOUND');
      assert.ok(err.requestId);
      return true;
    });
  } finally {
    kato.close();
  }
});

test('a rejected field is a typed field violation', opts, async () => {
  const kato = new KatoClient(shared.target);
  try {
    await assert.rejects(kato.session(freshKb('bad')).configure({ recall_threshold: 1.5 }), (err) => {
      assert.ok(err instanceof KatoError);
      assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
      assert.equal(err.codeName, 'INVALID_ARGUMENT');
      assert.ok(err.violation('config.recall_threshold'));
      assert.ok(err.requestId);
      assert.match(err.message, /config\.recall_threshold/);
      return true;
    });
  } finally {
    kato.close();
  }
});

test('the stream threads the state and goes on after a rejected step', opts, async () => {
  const kato = new KatoClient(shared.target);
  try {
    const session = kato.session(freshKb('stream'));
    const stream = await session.stream();
    for (const event of [['a'], ['b'], ['c']]) await stream.observe(event);
    await assert.rejects(stream.observe({ strings: ['d'], emotives: { joy: Infinity } }), (err) => {
      assert.ok(err instanceof KatoError);
      assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
      assert.ok(err.fieldViolations.length > 0);
      return true;
    });
    const name = await stream.learn();
    await stream.observe(['a']);
    await stream.close();
    assert.deepEqual(await session.stm(), [['a']]);
    assert.equal((await kato.getPattern(session.kbId, name)).name.replace(/^PTRN\|/, ''), name.replace(/^PTRN\|/, ''));
  } finally {
    kato.close();
  }
});

test('listPatterns pages through every pattern in name order', opts, async () => {
  const kato = new KatoClient(shared.target);
  try {
    const session = kato.session(freshKb('pages'));
    const learned = [];
    for (let i = 0; i < 5; i += 1) {
      await session.observe([`x${i}`]);
      await session.observe(['y']);
      learned.push(await session.learn());
    }
    const listed = [];
    for await (const pattern of kato.listPatterns(session.kbId, { pageSize: 2 })) listed.push(pattern.name);
    assert.deepEqual(listed, learned.sort());
    const kbs = [];
    for await (const kb of kato.listKnowledgeBases({ pageSize: 1 })) kbs.push(kb);
    assert.deepEqual(kbs.find((kb) => kb.kb_id === session.kbId), { kb_id: session.kbId, pattern_count: 5 });
    assert.deepEqual(kbs.map((kb) => kb.kb_id), kbs.map((kb) => kb.kb_id).sort());
  } finally {
    kato.close();
  }
});

test('RESOURCE_EXHAUSTED without RetryInfo is final, and a write carries a request_id', opts, async () => {
  const kato = new KatoClient(shared.target);
  try {
    const request = { state: { kb_id: freshKb('limit') }, observations: Array.from({ length: 10001 }, () => ({ strings: ['a'] })) };
    await assert.rejects(kato.call('ObserveSequence', request), (err) => {
      assert.equal(err.code, grpc.status.RESOURCE_EXHAUSTED);
      assert.equal(err.retryDelayMs, 0);
      return true;
    });
    assert.match(request.request_id, /^[0-9a-f-]{36}$/);
  } finally {
    kato.close();
  }
});

test('a read is retried across a server restart', opts, async () => {
  const first = await startServer();
  let second;
  let armed = false;
  let sent;
  const wasSent = new Promise((resolve) => {
    sent = resolve;
  });
  // Tells when the Predict has been handed to the connection.
  const spy = (options, nextCall) => new grpc.InterceptingCall(nextCall(options), {
    sendMessage(message, next) {
      next(message);
      if (armed && options.method_definition.path.endsWith('/Predict')) {
        armed = false;
        sent();
      }
    },
  });
  const kato = new KatoClient(first.target, {
    timeoutMs: 120000, // hang guard
    interceptors: [spy],
    // Reconnect soon after the restart rather than after gRPC's back-off of up to 2 min.
    channelOptions: { 'grpc.initial_reconnect_backoff_ms': 100, 'grpc.max_reconnect_backoff_ms': 1000 },
  });
  try {
    const session = kato.session(freshKb('restart'));
    const name = await teach(session);
    // Freeze the server, send the Predict into its connection, then kill it:
    // the first attempt fails UNAVAILABLE after it was sent.
    first.signal('SIGSTOP');
    armed = true;
    const predicted = session.predict();
    await wasSent;
    await first.kill();
    // The same port and data directory: the new server verifies the old one's states.
    second = await startServer({ dataDir: first.dataDir, port: first.port });
    assertFuture(await predicted, name);
  } finally {
    kato.close();
    await first.kill();
    if (second) await second.stop();
  }
});

test('the service config retries only the calls safe to repeat', () => {
  const config = serviceConfig(DEFAULT_RETRY, 30000);
  const [all, safe] = config.methodConfig;
  assert.equal(all.timeout, '30s');
  const methods = safe.name.map((n) => n.method);
  for (const m of ['Predict', 'Learn', 'Observe', 'ListPatterns']) assert.ok(methods.includes(m), m);
  for (const m of ['CreateSession', 'DeletePattern', 'StreamObservations']) assert.ok(!methods.includes(m), m);
  assert.deepEqual(safe.retryPolicy.retryableStatusCodes, ['UNAVAILABLE']);
  assert.throws(() => serviceConfig({ maxAttempts: 1 }, 0), /maxAttempts/);
  assert.equal(serviceConfig(null, 0).methodConfig.length, 1);
});
