'use strict';
// KatoClient: the Node client at the Python client's level, over the
// contract kato.js loads. Deadlines and a retry policy given as gRPC service
// config, typed errors (KatoError), sessions that thread their state
// (client-held) or carry an id (server-held), the observation stream and
// paged listings.

const crypto = require('node:crypto');
const { grpc, kato, decode, toStruct } = require('./kato');

const SERVICE = 'kato.v1.KatoService';

/**
 * The methods the retry policy covers: reads, idempotent calls, and the
 * writes that carry a request_id (the client fills one in). CreateSession,
 * DeleteSession, DeletePattern, UpdatePattern, the clears, the config updates,
 * ExtendSession and the stream are never retried: a repeat would answer
 * differently or do more.
 */
const SAFE_TO_RETRY = Object.freeze([
  'Predict', 'GetStm', 'GetPerceptData', 'GetCognitionData', 'GetConfig',
  'GetPattern', 'ListPatterns', 'ListKnowledgeBases', 'GetSymbolStats', 'GetSymbolAffinity',
  'ClearKnowledgeBase', 'FinalizeTraining', 'GetSession', 'SessionExists',
  'Observe', 'ObserveSequence', 'Learn',
]);
const WRITES_WITH_REQUEST_ID = new Set(['Observe', 'ObserveSequence', 'Learn']);

/** The default retry policy: on UNAVAILABLE, 5 attempts, back-off 0.1 s to 5 s. */
const DEFAULT_RETRY = Object.freeze({ maxAttempts: 5, initialBackoffMs: 100, maxBackoffMs: 5000, multiplier: 2 });

const REQUEST_ID_HEADER = 'x-request-id';

/** A fresh request_id: a random UUID4 (AIP-155). */
const newRequestId = () => crypto.randomUUID();

/**
 * The gRPC service config the client dials with: every method gets the
 * timeout; the methods of SAFE_TO_RETRY get the retry policy on UNAVAILABLE.
 * `retry` null retries nothing.
 */
function serviceConfig(retry, timeoutMs) {
  const timeout = timeoutMs > 0 ? { timeout: `${timeoutMs / 1000}s` } : {};
  const methodConfig = [{ name: [{ service: SERVICE }], ...timeout }];
  if (retry) {
    const { maxAttempts, initialBackoffMs, maxBackoffMs, multiplier } = retry;
    if (!(maxAttempts >= 2 && initialBackoffMs > 0 && maxBackoffMs > 0 && multiplier > 0)) {
      throw new TypeError(`retry policy ${JSON.stringify(retry)} needs maxAttempts >= 2 and positive back-offs and multiplier`);
    }
    methodConfig.push({
      name: SAFE_TO_RETRY.map((method) => ({ service: SERVICE, method })),
      ...timeout,
      waitForReady: true,
      retryPolicy: {
        maxAttempts,
        initialBackoff: `${initialBackoffMs / 1000}s`,
        maxBackoff: `${maxBackoffMs / 1000}s`,
        backoffMultiplier: multiplier,
        retryableStatusCodes: ['UNAVAILABLE'],
      },
    });
  }
  return { methodConfig };
}

/**
 * A failed call, with what the server said decoded: `code` (a grpc.status
 * number) and `codeName`, `details` (the message), `reason` and `metadata`
 * (google.rpc.ErrorInfo), `fieldViolations` ([{field, description}],
 * google.rpc.BadRequest), `retryDelayMs` (google.rpc.RetryInfo), `requestId`
 * (the server's x-request-id) and the original error as `cause`.
 */
class KatoError extends Error {
  constructor({ code, details = '', reason = '', metadata = {}, fieldViolations = [], retryDelayMs = 0, requestId = '', cause }) {
    const codeName = grpc.status[code] || String(code);
    const violations = fieldViolations.map((v) => `; ${v.field}: ${v.description}`).join('');
    super(`${codeName}: ${details}${reason ? ` [${reason}]` : ''}${violations}${requestId ? ` (request ${requestId})` : ''}`,
      cause ? { cause } : undefined);
    this.name = 'KatoError';
    Object.assign(this, { code, codeName, details, reason, metadata, fieldViolations, retryDelayMs, requestId });
  }

  /** The description of the violation of `field`, or undefined. */
  violation(field) {
    const found = this.fieldViolations.find((v) => v.field === field);
    return found && found.description;
  }
}

function durationMs(d) {
  return d ? Number(d.seconds || 0) * 1000 + Math.round(Number(d.nanos || 0) / 1e6) : 0;
}

/** Reads the details of a google.rpc.Status (plain object: code, message, details). */
function fromStatus(st, requestId = '', cause = undefined) {
  const out = { code: st.code, details: st.message, requestId, cause, fieldViolations: [] };
  for (const detail of st.details || []) {
    const type = detail.type_url.slice(detail.type_url.lastIndexOf('/') + 1);
    if (type === 'google.rpc.BadRequest') {
      for (const v of decode(type, detail.value).field_violations) {
        out.fieldViolations.push({ field: v.field, description: v.description });
      }
    } else if (type === 'google.rpc.ErrorInfo') {
      const info = decode(type, detail.value);
      out.reason = info.reason;
      out.metadata = info.metadata;
    } else if (type === 'google.rpc.RetryInfo') {
      out.retryDelayMs = durationMs(decode(type, detail.value).retry_delay);
    }
  }
  return new KatoError(out);
}

/** The KatoError of a grpc-js error (its status details come in a trailer). */
function fromGrpcError(err) {
  if (err instanceof KatoError) return err;
  const md = err.metadata;
  const requestId = md ? String(md.get(REQUEST_ID_HEADER)[0] || '') : '';
  const raw = md ? md.get('grpc-status-details-bin')[0] : undefined;
  const st = raw ? decode('google.rpc.Status', raw) : { code: err.code, message: err.details || err.message, details: [] };
  return fromStatus({ ...st, code: err.code ?? st.code, message: err.details ?? st.message }, requestId, err);
}

/** An Observation from symbols, or from {strings, vectors: [[...]], emotives, metadata: {...}, unique_id}. */
function observation(obs = []) {
  if (Array.isArray(obs)) return { strings: obs };
  const out = { ...obs };
  if (obs.vectors) out.vectors = obs.vectors.map((v) => (Array.isArray(v) ? { values: v } : v));
  if (obs.metadata && !obs.metadata.fields) out.metadata = toStruct(obs.metadata);
  return out;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

class KatoClient {
  /**
   * A client of the server at `target` (host:port), connecting at the first call.
   *
   * Options: `timeoutMs` (deadline of each call, default 30000; 0: none),
   * `retry` (DEFAULT_RETRY; null retries nothing), `credentials`
   * (default insecure), `channelOptions`, `interceptors`.
   */
  constructor(target, { timeoutMs = 30000, retry = DEFAULT_RETRY, credentials, channelOptions = {}, interceptors = [] } = {}) {
    this.timeoutMs = timeoutMs;
    this.retry = retry;
    this.raw = new kato.KatoService(target, credentials || grpc.credentials.createInsecure(), {
      'grpc.service_config': JSON.stringify(serviceConfig(retry, timeoutMs)),
      ...channelOptions,
      interceptors,
    });
  }

  close() {
    this.raw.close();
  }

  /**
   * Calls a unary method; resolves with its response or rejects with a
   * KatoError. A write of SAFE_TO_RETRY without a request_id gets a fresh one
   * (in place, so every attempt sends it). Safe calls wait for the server to
   * be ready (grpc-js reads no waitForReady from a service config) and are
   * retried on RESOURCE_EXHAUSTED when it carries RetryInfo, after its delay.
   */
  async call(method, request = {}, { timeoutMs = this.timeoutMs } = {}) {
    const safe = this.retry !== null && SAFE_TO_RETRY.includes(method);
    if (WRITES_WITH_REQUEST_ID.has(method) && !request.request_id) request.request_id = newRequestId();
    const deadline = timeoutMs > 0 ? Date.now() + timeoutMs : Infinity;
    for (let attempt = 1; ; attempt += 1) {
      try {
        return await this._unary(method, request, deadline, safe);
      } catch (err) {
        const error = fromGrpcError(err);
        if (!safe || error.code !== grpc.status.RESOURCE_EXHAUSTED || !(error.retryDelayMs > 0)
            || attempt >= this.retry.maxAttempts || Date.now() + error.retryDelayMs > deadline) {
          throw error;
        }
        await sleep(error.retryDelayMs);
      }
    }
  }

  _unary(method, request, deadline, waitForReady) {
    return new Promise((resolve, reject) => {
      const options = deadline === Infinity ? {} : { deadline: new Date(deadline) };
      this.raw[method](request, new grpc.Metadata({ waitForReady }), options, (err, response) => {
        if (err) reject(err);
        else resolve(response);
      });
    });
  }

  /** A client-held session on knowledge base `kbId` (or resumed from a saved `state`). */
  session(kbIdOrState) {
    return new Session(this, typeof kbIdOrState === 'string' ? { kb_id: kbIdOrState } : kbIdOrState);
  }

  /** Creates a server-held session: {config, ttlSeconds, metadata} are optional. */
  async createSession(kbId, { config, ttlSeconds, metadata } = {}) {
    const request = { kb_id: kbId };
    if (config) request.config = config;
    if (ttlSeconds !== undefined) request.ttl_seconds = ttlSeconds;
    if (metadata) request.metadata = toStruct(metadata);
    const { session } = await this.call('CreateSession', request);
    return new ServerSession(this, session.session_id, session);
  }

  /** A handle on an existing server-held session. */
  serverSession(sessionId) {
    return new ServerSession(this, sessionId);
  }

  /** Every pattern of the KB in name order, a page at a time as you iterate (`for await`). */
  async* listPatterns(kbId, { pageSize = 0 } = {}) {
    let page_token = '';
    do {
      const page = await this.call('ListPatterns', { kb_id: kbId, page_size: pageSize, page_token });
      yield* page.patterns;
      page_token = page.next_page_token;
    } while (page_token);
  }

  /** Every knowledge base holding a pattern ({kb_id, pattern_count}), in kb_id order (`for await`). */
  async* listKnowledgeBases({ pageSize = 0 } = {}) {
    let page_token = '';
    do {
      const page = await this.call('ListKnowledgeBases', { page_size: pageSize, page_token });
      yield* page.knowledge_bases;
      page_token = page.next_page_token;
    } while (page_token);
  }

  getPattern(kbId, name) {
    return this.call('GetPattern', { kb_id: kbId, name }).then((r) => r.pattern);
  }

  deletePattern(kbId, name) {
    return this.call('DeletePattern', { kb_id: kbId, name }).then(() => undefined);
  }

  symbolStats(kbId) {
    return this.call('GetSymbolStats', { kb_id: kbId });
  }

  clearKnowledgeBase(kbId) {
    return this.call('ClearKnowledgeBase', { kb_id: kbId }).then(() => undefined);
  }
}

/** Session calls shared by client-held and server-held sessions. */
class SessionCalls {
  constructor(client) {
    this.client = client;
  }

  _ref() {
    throw new Error('abstract');
  }

  _keep(response) {
    return response;
  }

  async _call(method, fields = {}) {
    return this._keep(await this.client.call(method, { ...this._ref(), ...fields }));
  }

  /**
   * Observes one event: an array of symbols or an observation object.
   * Options: returnPredictions, requestId (default: a fresh UUID4).
   */
  observe(obs, { returnPredictions = false, requestId = '' } = {}) {
    return this._call('Observe', { observation: observation(obs), return_predictions: returnPredictions, request_id: requestId });
  }

  /** Observes a list atomically. Options: learnAfterEach, learnAtEnd, clearStmBetween, requestId. */
  observeSequence(observations, { learnAfterEach = false, learnAtEnd = false, clearStmBetween = false, requestId = '' } = {}) {
    return this._call('ObserveSequence', {
      observations: observations.map(observation),
      learn_after_each: learnAfterEach,
      learn_at_end: learnAtEnd,
      clear_stm_between: clearStmBetween,
      request_id: requestId,
    });
  }

  /** Learns the STM; resolves with `PTRN|<sha1>`, or '' when fewer than 2 symbols were held. */
  async learn({ requestId = '' } = {}) {
    return (await this._call('Learn', { request_id: requestId })).pattern_name;
  }

  predict() {
    return this._call('Predict');
  }

  async stm() {
    return (await this._call('GetStm')).stm.map((e) => e.symbols);
  }

  cognition() {
    return this._call('GetCognitionData');
  }

  async clearStm() {
    await this._call('ClearStm');
  }

  async clearAll() {
    await this._call('ClearAll');
  }

  async config() {
    return (await this._call('GetConfig')).config;
  }

  async configure(config) {
    return (await this._call('UpdateConfig', { config })).config;
  }

  /** Opens a StreamObservations call on this session; see Stream. */
  async stream({ returnPredictions = false, timeoutMs = this.client.timeoutMs } = {}) {
    const stream = new Stream(this, timeoutMs);
    await stream._open({ ...this._ref(), return_predictions: returnPredictions });
    return stream;
  }
}

/**
 * A client-held session: every call sends `state` and keeps the state the
 * response returns. Its calls are sequential by nature: await each one.
 */
class Session extends SessionCalls {
  constructor(client, state) {
    super(client);
    this.state = state;
  }

  get kbId() {
    return this.state.kb_id;
  }

  _ref() {
    return { state: this.state };
  }

  _keep(response) {
    if (response && response.state) this.state = response.state;
    return response;
  }
}

/** A server-held session: calls carry `sessionId`; the state lives on the server. */
class ServerSession extends SessionCalls {
  constructor(client, sessionId, info = null) {
    super(client);
    this.sessionId = sessionId;
    this.info = info;
  }

  _ref() {
    return { session_id: this.sessionId };
  }

  async get() {
    this.info = (await this.client.call('GetSession', { session_id: this.sessionId })).session;
    return this.info;
  }

  async extend(ttlSeconds) {
    return (await this.client.call('ExtendSession', { session_id: this.sessionId, ttl_seconds: ttlSeconds })).session;
  }

  async delete() {
    await this.client.call('DeleteSession', { session_id: this.sessionId });
  }

  exists() {
    return this.client.call('SessionExists', { session_id: this.sessionId });
  }

  async configure(config) {
    return (await this.client.call('UpdateSessionConfig', { session_id: this.sessionId, config })).config;
  }
}

/**
 * One StreamObservations call, step by step: each method sends one step and
 * resolves with its answer (the server answers in order and reads the next
 * step only after answering). A rejected step rejects with its KatoError and
 * the stream goes on; any other failure ends it. Not retried.
 */
class Stream {
  constructor(session, timeoutMs) {
    this.session = session;
    this.waiting = [];
    this.ended = null; // the KatoError (or null on a clean end) once the call is over
    const options = timeoutMs > 0 ? { deadline: new Date(Date.now() + timeoutMs) } : {};
    this.call = session.client.raw.StreamObservations(options);
    this.call.on('data', (answer) => this._answer(answer));
    this.call.on('error', (err) => this._end(fromGrpcError(err)));
    this.call.on('end', () => this._end(null));
    this.closed = new Promise((resolve) => {
      this._closedResolve = resolve;
    });
  }

  _answer(answer) {
    if (answer.closed) {
      this.session._keep({ state: answer.closed.state });
      return;
    }
    const next = this.waiting.shift();
    if (!next) return;
    if (answer.error) next.reject(fromStatus(answer.error));
    else next.resolve(answer);
  }

  _end(error) {
    if (this._done) return;
    this._done = true;
    this.ended = error;
    for (const next of this.waiting.splice(0)) next.reject(error || new Error('the stream ended'));
    this._closedResolve(error);
  }

  _step(step) {
    if (this._done) return Promise.reject(this.ended || new Error('the stream has ended'));
    return new Promise((resolve, reject) => {
      this.waiting.push({ resolve, reject });
      this.call.write(step);
    });
  }

  async _open(open) {
    this.stmLength = (await this._step({ open })).opened.stm_length;
  }

  /** Observes one event (symbols or an observation); resolves with the ObserveResponse. */
  async observe(obs) {
    return (await this._step({ observation: observation(obs) })).observed;
  }

  async learn() {
    return (await this._step({ learn: {} })).learned.pattern_name;
  }

  async clearStm() {
    await this._step({ clear_stm: {} });
  }

  /** Half-closes and waits for the end; a client-held session gets the final state. */
  async close() {
    this.call.end();
    const error = await this.closed;
    if (error) throw error;
  }
}

module.exports = {
  SERVICE, SAFE_TO_RETRY, DEFAULT_RETRY, REQUEST_ID_HEADER,
  KatoClient, KatoError, Session, ServerSession, Stream,
  serviceConfig, newRequestId, observation, fromGrpcError, fromStatus,
};
