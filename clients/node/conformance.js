'use strict';
// Replays conformance vectors (tests/conformance/vectors) against a live KATO
// gRPC server through the Node stubs, with client-held sessions, and prints
// `N passed, N failed`. Exits non-zero when a case fails.
//
// The cases run are those listed in cases.txt (--cases overrides it), one
// `file_stem::case_id` a line; --all runs every case whose operations this
// replayer supports instead. The vector format and the matchers are defined by
// tests/conformance/README.md and tests/conformance/matchers.py.
//
//   node conformance.js --target 127.0.0.1:50051 --vectors ../../tests/conformance/vectors

const fs = require('node:fs');
const path = require('node:path');
const crypto = require('node:crypto');
const { parseArgs } = require('node:util');
const { grpc, packageDefinition, createClient, call, toStruct } = require('./kato');
const {
  MatchError, scopeOf, short, jsonEqual, isOperatorObject, resolveLabel, check, checkObject, checkPredictions,
} = require('./matchers');

/** The operations the adapter implements (README §3). */
const SUPPORTED_OPS = new Set([
  'observe', 'learn', 'clear_stm', 'clear_all', 'stm', 'predictions', 'get_pattern', 'configure',
  'get_config', 'create_session',
]);
/** The tags --all leaves out: transports, timings, engine features not asserted here. */
const SKIPPED_TAGS = new Set(['vectors', 'vector-neighbours', 'http-only', 'timing', 'load', 'slow', 'python-repr']);
/** The operations whose plain-object expect is a partial match. */
const OBJECT_RESULT_OPS = new Set([
  'observe', 'observe_sequence', 'get_config', 'percept_data', 'cognition_data', 'session_info',
  'session_exists', 'extend_session', 'create_session', 'delete_session',
]);
const DEFAULT_TTL = 3600;
const CONFIG_FIELDS = new Map(packageDefinition['kato.v1.SessionConfig'].type.field.map((f) => [f.name, f]));

/** The engine refused an operation: kind is validation, not_found or other; code the gRPC status code, if any. */
class Rejected extends Error {
  constructor(kind, message, code = undefined) {
    super(`${kind}: ${message}`);
    this.kind = kind;
    this.code = code;
  }
}

/** Maps a gRPC error to a rejection; a server or transport failure stays an error (a crash). */
function rejection(err) {
  if (err.code === undefined) return err;
  switch (err.code) {
    case grpc.status.INVALID_ARGUMENT:
    case grpc.status.RESOURCE_EXHAUSTED:
      return new Rejected('validation', err.details, err.code);
    case grpc.status.NOT_FOUND:
      return new Rejected('not_found', err.details, err.code);
    case grpc.status.UNAVAILABLE:
    case grpc.status.DEADLINE_EXCEEDED:
    case grpc.status.INTERNAL:
    case grpc.status.UNKNOWN:
      return err;
    default:
      return new Rejected('other', `${grpc.status[err.code]}: ${err.details}`, err.code);
  }
}

const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
const isStringList = (v) => Array.isArray(v) && v.every((s) => typeof s === 'string');

/**
 * An Observation for a JSON payload, or a `validation` rejection when the wire
 * types cannot carry it (a null string, a string where a list goes), as any
 * typed gRPC client would.
 */
function observation(raw) {
  if (!isObject(raw)) throw new Rejected('validation', 'observation must be an object');
  const strings = raw.strings ?? [];
  const vectors = raw.vectors ?? [];
  const emotives = raw.emotives ?? {};
  const metadata = raw.metadata ?? {};
  const uniqueId = raw.unique_id ?? '';
  if (!isStringList(strings)) throw new Rejected('validation', `strings: ${short(strings)} is not a list of strings`);
  if (!Array.isArray(vectors) || !vectors.every((v) => Array.isArray(v) && v.every((x) => typeof x === 'number'))) {
    throw new Rejected('validation', `vectors: ${short(vectors)} is not a list of number lists`);
  }
  if (!isObject(emotives) || !Object.values(emotives).every((x) => typeof x === 'number')) {
    throw new Rejected('validation', `emotives: ${short(emotives)} is not a map of numbers`);
  }
  if (!isObject(metadata) || typeof uniqueId !== 'string') {
    throw new Rejected('validation', 'metadata must be an object and unique_id a string');
  }
  const obs = { strings, vectors: vectors.map((values) => ({ values })), emotives, unique_id: uniqueId };
  if (Object.keys(metadata).length) obs.metadata = toStruct(metadata);
  return obs;
}

/** A SessionConfig holding the given keys; unknown keys are ignored, wrong JSON types rejected. */
function sessionConfig(overrides) {
  if (overrides === null || overrides === undefined) return {};
  if (!isObject(overrides)) throw new Rejected('validation', `config: ${short(overrides)} must be an object`);
  const config = {};
  for (const [key, value] of Object.entries(overrides)) {
    const field = CONFIG_FIELDS.get(key);
    if (!field) continue;
    if (key === 'affinity_emotive' && value === null) continue;
    const bad = new Rejected('validation', `config.${key}: ${short(value)} has the wrong type`);
    switch (field.type) {
      case 'TYPE_MESSAGE': // filter_pipeline
        if (!isStringList(value)) throw bad;
        config[key] = { values: value };
        break;
      case 'TYPE_DOUBLE':
        if (typeof value !== 'number') throw bad;
        config[key] = value;
        break;
      case 'TYPE_INT32':
        if (!Number.isInteger(value) || value < -(2 ** 31) || value >= 2 ** 31) throw bad;
        config[key] = value;
        break;
      case 'TYPE_BOOL':
        if (typeof value !== 'boolean') throw bad;
        config[key] = value;
        break;
      case 'TYPE_STRING':
        if (typeof value !== 'string') throw bad;
        config[key] = value;
        break;
      default:
        throw bad;
    }
  }
  return config;
}

const events = (list) => list.map((e) => [...e.symbols]);
const stringLists = (m) => Object.fromEntries(Object.entries(m).map(([k, v]) => [k, [...v.values]]));
const optional = (p, name) => (p[name] === undefined ? null : p[name]);

/** A Prediction with the field names of SPEC.md §6.12 (unset weighted_* fields are null). */
function prediction(p) {
  return {
    type: p.type, name: p.name, frequency: p.frequency, emotives: { ...p.emotives },
    metadata: stringLists(p.metadata), sequence: events(p.sequence), matches: [...p.matches],
    past: events(p.past), present: events(p.present), future: events(p.future),
    missing: events(p.missing), extras: events(p.extras),
    anomalies: p.anomalies.map((a) => ({ observed: a.observed, expected: a.expected, similarity: a.similarity })),
    similarity: p.similarity, evidence: p.evidence, confidence: p.confidence, snr: p.snr,
    fragmentation: p.fragmentation, entropy: p.entropy, normalized_entropy: p.normalized_entropy,
    global_normalized_entropy: p.global_normalized_entropy, itfdf_similarity: p.itfdf_similarity,
    confluence: p.confluence, tfidf_score: p.tfidf_score, pattern_probability: p.pattern_probability,
    weighted_strength: p.weighted_strength, predictive_information: p.predictive_information,
    bayesian_prior: p.bayesian_prior, bayesian_likelihood: p.bayesian_likelihood,
    bayesian_posterior: p.bayesian_posterior, potential: p.potential,
    weighted_similarity: optional(p, 'weighted_similarity'), weighted_evidence: optional(p, 'weighted_evidence'),
    weighted_confidence: optional(p, 'weighted_confidence'), weighted_snr: optional(p, 'weighted_snr'),
  };
}

/** The effective configuration as GetConfig returns it: affinity_emotive null when unset. */
function configObject(config) {
  const out = {};
  for (const name of CONFIG_FIELDS.keys()) {
    const value = config[name];
    if (name === 'affinity_emotive') out[name] = value ? value : null;
    else if (name === 'filter_pipeline') {
      if (value) out[name] = [...value.values];
    } else if (value !== undefined && value !== null) out[name] = value;
  }
  return out;
}

/**
 * The adapter from the vectors' operations to the API. Each session alias owns
 * a client-held SessionState, replaced by the one each response returns; a
 * node alias maps to a knowledge-base id under a prefix unique to the case.
 */
class Adapter {
  constructor(client, prefix, timeoutMs) {
    this.client = client;
    this.prefix = prefix;
    this.timeoutMs = timeoutMs;
    this.sessions = new Map();
    this.anon = 0;
  }

  async rpc(method, request) {
    try {
      return await call(this.client, method, request, { timeoutMs: this.timeoutMs });
    } catch (err) {
      throw rejection(err);
    }
  }

  kbId(node) {
    let name = node;
    if (typeof name !== 'string' || !name) {
      this.anon += 1;
      name = `anon${this.anon}`;
    }
    const safe = [...name].map((c) => (/^[A-Za-z0-9_.:-]$/.test(c) ? c : '_')).join('').slice(0, 60);
    return `${this.prefix}-${safe}`;
  }

  session(alias) {
    if (!this.sessions.has(alias)) throw new Rejected('not_found', `session ${JSON.stringify(alias)} does not exist`);
    return this.sessions.get(alias);
  }

  /** Runs a call that returns a new state, keeps the state, returns the response. */
  async update(alias, method, extra = {}) {
    const state = this.session(alias);
    const response = await this.rpc(method, { state, ...extra });
    this.sessions.set(alias, response.state);
    return response;
  }

  async run(op, alias, step) {
    switch (op) {
      case 'create_session': return this.createSession(alias, step);
      case 'observe': return this.observe(alias, step);
      case 'learn': return this.learn(alias);
      case 'clear_stm': await this.update(alias, 'ClearStm'); return null;
      case 'clear_all': await this.update(alias, 'ClearAll'); return null;
      case 'configure': await this.update(alias, 'UpdateConfig', { config: sessionConfig(step.config ?? {}) }); return null;
      case 'stm': return events((await this.rpc('GetStm', { state: this.session(alias) })).stm);
      case 'predictions': return (await this.rpc('Predict', { state: this.session(alias) })).predictions.map(prediction);
      case 'get_pattern': return this.getPattern(alias, step);
      case 'get_config': return configObject((await this.rpc('GetConfig', { state: this.session(alias) })).config);
      default: throw new Error(`unsupported operation ${JSON.stringify(op)}`);
    }
  }

  async createSession(alias, step) {
    if ('raw' in step) throw new Error('unsupported: create_session with a raw payload');
    const ttl = step.ttl_seconds ?? DEFAULT_TTL;
    if (!Number.isInteger(ttl) || ttl < 1 || ttl > 2592000) throw new Rejected('validation', `ttl_seconds: ${short(ttl)} out of range`);
    const metadata = step.metadata ?? {};
    if (!isObject(metadata)) throw new Rejected('validation', 'metadata must be an object');
    let state = { kb_id: this.kbId(step.node) };
    if (isObject(step.config) && Object.keys(step.config).length) {
      state = (await this.rpc('UpdateConfig', { state, config: sessionConfig(step.config) })).state;
    }
    this.sessions.set(alias, state);
    return { session_id: alias, node_id: step.node || null, ttl_seconds: ttl, metadata };
  }

  async observe(alias, step) {
    const raw = 'raw' in step ? step.raw : Object.fromEntries(
      ['strings', 'vectors', 'emotives', 'metadata', 'unique_id'].filter((k) => k in step).map((k) => [k, step[k]]));
    const r = await this.update(alias, 'Observe', { observation: observation(raw) });
    return {
      status: 'okay', stm_length: r.stm_length, time: r.time, unique_id: r.unique_id,
      auto_learned_pattern: r.auto_learned_pattern || null,
    };
  }

  async learn(alias) {
    try {
      return (await this.update(alias, 'Learn')).pattern_name;
    } catch (err) {
      if (err instanceof Rejected && err.code === grpc.status.FAILED_PRECONDITION) {
        return ''; // an empty STM learns nothing (README §3 learn)
      }
      throw err;
    }
  }

  async getPattern(alias, step) {
    const state = this.session(alias);
    if (!step.name) return null;
    let pattern;
    try {
      ({ pattern } = await this.rpc('GetPattern', { kb_id: state.kb_id, name: step.name }));
    } catch (err) {
      if (err instanceof Rejected && err.kind === 'not_found') return null;
      throw err;
    }
    return {
      name: pattern.name, pattern_data: events(pattern.events), length: pattern.length,
      frequency: pattern.frequency, emotives: pattern.emotives.map((e) => ({ ...e.values })),
      metadata: stringLists(pattern.metadata),
    };
  }
}

// --- the runner ----------------------------------------------------------------

function loadCases(dir) {
  const files = fs.readdirSync(dir).filter((f) => f.endsWith('.json')).sort();
  if (!files.length) throw new Error(`no *.json vectors in ${dir}`);
  const cases = new Map();
  for (const file of files) {
    const data = JSON.parse(fs.readFileSync(path.join(dir, file), 'utf8'));
    if ((data.format_version ?? 1) !== 1) throw new Error(`${file}: unsupported format_version ${data.format_version}`);
    const stem = file.slice(0, -'.json'.length);
    for (const c of data.cases) cases.set(`${stem}::${c.id}`, c);
  }
  return cases;
}

function supported(c) {
  if ((c.tags || []).some((t) => SKIPPED_TAGS.has(t))) return false;
  return c.steps.every((s) => SUPPORTED_OPS.has(s.op) && !(s.op === 'create_session' && 'raw' in s));
}

const readList = (text) => text.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));

/** The session's STM, or the kind of its rejection. */
async function stmSnapshot(adapter, alias) {
  try {
    return await adapter.run('stm', alias, { op: 'stm' });
  } catch (err) {
    return err instanceof Rejected ? `rejected:${err.kind}` : `error:${err.message}`;
  }
}

function checkExpect(op, result, expect, scope) {
  if (op === 'predictions') {
    if (!Array.isArray(expect)) throw new MatchError(`predictions.expect must be a list of assertions, got ${short(expect)}`);
    expect.forEach((assertion, i) => {
      try {
        checkPredictions(result, assertion, scope, '$');
      } catch (err) {
        if (err instanceof MatchError) throw new MatchError(`assertion ${i} ${short(assertion)}: ${err.message}`);
        throw err;
      }
    });
  } else if (OBJECT_RESULT_OPS.has(op) && isObject(expect) && !isOperatorObject(expect)) {
    checkObject(result, expect, scope, '$');
  } else {
    check(result, expect, scope, '$');
  }
}

async function runStep(adapter, step, labels) {
  const { op } = step;
  const alias = step.session ?? 'main';
  const expectError = step.expect_error;
  const allowError = Boolean(step.allow_error);
  const callStep = { ...step };
  if (op === 'get_pattern' && 'name_ref' in step) callStep.name = resolveLabel(labels, step.name_ref);
  const watch = expectError !== undefined || allowError;
  const before = watch ? await stmSnapshot(adapter, alias) : null;
  let result;
  try {
    result = await adapter.run(op, alias, callStep);
  } catch (err) {
    if (!(err instanceof Rejected)) throw err; // a crash: the case fails
    if (expectError === undefined && !allowError) throw new MatchError(`rejected unexpectedly: ${err.message}`);
    if (expectError !== undefined && expectError !== 'any' && err.kind !== expectError) {
      throw new MatchError(`expected a ${JSON.stringify(expectError)} rejection, got ${err.message}`);
    }
    const after = await stmSnapshot(adapter, alias);
    if (!jsonEqual(before, after)) throw new MatchError(`the rejected operation changed the session's STM: ${short(before)} -> ${short(after)}`);
    if ('save_as' in step) labels[step.save_as] = null;
    return;
  }
  if (expectError !== undefined) {
    throw new MatchError(`expected a ${JSON.stringify(expectError)} rejection, but the operation returned ${short(result)}`);
  }
  if ('expect' in step) checkExpect(op, result, step.expect, scopeOf(labels));
  if ('save_as' in step) labels[step.save_as] = result;
}

async function runCase(c, adapter) {
  const labels = {};
  const config = c.config || {};
  try {
    await adapter.run('create_session', 'main', { op: 'create_session', session: 'main', node: 'main', config });
  } catch (err) {
    throw new Error(`creating the initial session with config ${short(config)}: ${err.message}`);
  }
  for (const [i, step] of c.steps.entries()) {
    try {
      await runStep(adapter, step, labels);
    } catch (err) {
      throw new Error(`step ${i} (${step.op}, session ${JSON.stringify(step.session ?? 'main')}): ${err.message}`);
    }
  }
}

async function main() {
  const { values: args } = parseArgs({
    options: {
      target: { type: 'string', default: '127.0.0.1:50051' },
      vectors: { type: 'string', default: path.join(__dirname, '..', '..', 'tests', 'conformance', 'vectors') },
      cases: { type: 'string', default: path.join(__dirname, 'cases.txt') },
      all: { type: 'boolean', default: false },
      verbose: { type: 'boolean', short: 'v', default: false },
      'timeout-ms': { type: 'string', default: '30000' },
    },
  });
  let cases;
  let selected;
  try {
    cases = loadCases(args.vectors);
    selected = args.all ? [...cases.keys()].filter((k) => supported(cases.get(k))) : readList(fs.readFileSync(args.cases, 'utf8'));
  } catch (err) {
    console.error(`conformance: ${err.message}`);
    process.exit(2);
  }
  const client = createClient(args.target);
  const runId = `node-${crypto.randomBytes(4).toString('hex')}`;
  let passed = 0;
  let failed = 0;
  for (const [i, key] of selected.entries()) {
    const c = cases.get(key);
    if (!c) {
      failed += 1;
      console.log(`FAIL ${key}: no such case in ${args.vectors}`);
      continue;
    }
    try {
      await runCase(c, new Adapter(client, `${runId}-${i}`, Number(args['timeout-ms'])));
      passed += 1;
      if (args.verbose) console.log(`ok   ${key}`);
    } catch (err) {
      failed += 1;
      console.log(`FAIL ${key}: ${err.message}`);
    }
  }
  client.close();
  console.log(`${passed} passed, ${failed} failed`);
  process.exitCode = failed > 0 || passed === 0 ? 1 : 0;
}

main();
