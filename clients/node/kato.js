'use strict';
// The KATO gRPC client for Node.js: @grpc/proto-loader reads the contract,
// protos/kato/v1/*.proto of this repository, at run time and @grpc/grpc-js
// builds the client from it. No code is generated. The imports come from
// third_party/ (google/api, google/rpc: copied by `make proto-node`, committed)
// and from protobufjs itself (google/protobuf/*).

const fs = require('node:fs');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');

/**
 * The directory of kato/v1/*.proto: KATO_PROTO_DIR, else the copy a packed package
 * carries (protos/, made by `npm pack`'s prepack), else the repository's protos/.
 */
const PROTO_DIR = process.env.KATO_PROTO_DIR
  || [path.join(__dirname, 'protos'), path.join(__dirname, '..', '..', 'protos')]
    .find((dir) => fs.existsSync(path.join(dir, 'kato', 'v1', 'kato_service.proto')));
const INCLUDE_DIRS = [PROTO_DIR, path.join(__dirname, 'third_party')];
const PROTO_FILES = ['kato/v1/kato_service.proto', 'kato/v1/types.proto'];

// Field names as in the .proto files (snake_case); int64 as Number (the API's
// int64 values, times and frequencies, stay far below 2^53); enums as names;
// repeated fields and maps always present; an unset message field is null and
// an unset `optional` scalar is absent.
const LOADER_OPTIONS = {
  keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true, includeDirs: INCLUDE_DIRS,
};

const packageDefinition = protoLoader.loadSync(PROTO_FILES, LOADER_OPTIONS);
const proto = grpc.loadPackageDefinition(packageDefinition);

/** The kato.v1 package: `new kato.KatoService(target, credentials)`. */
const kato = proto.kato.v1;

/** A client of KatoService on `target` (host:port), without TLS by default. */
function createClient(target, credentials = grpc.credentials.createInsecure()) {
  return new kato.KatoService(target, credentials);
}

/** Calls a unary method and resolves with its response (or rejects with the gRPC error). */
function call(client, method, request, { timeoutMs = 30000 } = {}) {
  return new Promise((resolve, reject) => {
    client[method](request, { deadline: new Date(Date.now() + timeoutMs) }, (err, response) => {
      if (err) reject(err);
      else resolve(response);
    });
  });
}

// google/protobuf/struct.proto is bundled with protobufjs in camelCase
// (numberValue, listValue), unlike the snake_case of the kato.v1 messages.

/** A google.protobuf.Value for a JSON value. */
function toValue(v) {
  if (v === null || v === undefined) return { nullValue: 'NULL_VALUE' };
  if (typeof v === 'number') return { numberValue: v };
  if (typeof v === 'string') return { stringValue: v };
  if (typeof v === 'boolean') return { boolValue: v };
  if (Array.isArray(v)) return { listValue: { values: v.map(toValue) } };
  if (typeof v === 'object') return { structValue: toStruct(v) };
  throw new TypeError(`cannot convert ${typeof v} to google.protobuf.Value`);
}

/** A google.protobuf.Struct for a plain object. */
function toStruct(obj) {
  const fields = {};
  for (const [k, v] of Object.entries(obj)) fields[k] = toValue(v);
  return { fields };
}

/** The JSON value of a decoded google.protobuf.Value. */
function fromValue(v) {
  switch (v && v.kind) {
    case 'numberValue': return v.numberValue;
    case 'stringValue': return v.stringValue;
    case 'boolValue': return v.boolValue;
    case 'structValue': return fromStruct(v.structValue);
    case 'listValue': return (v.listValue.values || []).map(fromValue);
    default: return null;
  }
}

/** The plain object of a decoded google.protobuf.Struct. */
function fromStruct(s) {
  const out = {};
  for (const [k, v] of Object.entries((s && s.fields) || {})) out[k] = fromValue(v);
  return out;
}

// google.rpc.Status and its details as protobufjs types, to decode what
// grpc-js hands over as bytes: the `grpc-status-details-bin` trailer.
const root = new protobuf.Root();
root.resolvePath = (origin, target) => {
  const found = INCLUDE_DIRS.map((dir) => path.join(dir, target)).find((file) => fs.existsSync(file));
  return found || target; // google/protobuf/* are bundled with protobufjs
};
root.loadSync(['google/rpc/status.proto', 'google/rpc/error_details.proto'], { keepCase: true });

/** Decodes `bytes` as the message `fullName` (for example `google.rpc.Status`) into a plain object. */
function decode(fullName, bytes) {
  const type = root.lookupType(fullName);
  return type.toObject(type.decode(bytes), { longs: Number, enums: String, defaults: true });
}

/** Encodes the plain object `value` as the message `fullName` (the inverse of decode). */
function encode(fullName, value) {
  const type = root.lookupType(fullName);
  return Buffer.from(type.encode(type.fromObject(value)).finish());
}

/**
 * The google.rpc.BadRequest field violations of a gRPC error
 * (`[{field, description}]`), read from its `grpc-status-details-bin` trailer.
 */
function fieldViolations(err) {
  const raw = err && err.metadata ? err.metadata.get('grpc-status-details-bin')[0] : undefined;
  if (!raw) return [];
  const violations = [];
  for (const detail of decode('google.rpc.Status', raw).details) {
    if (detail.type_url.endsWith('/google.rpc.BadRequest')) {
      for (const v of decode('google.rpc.BadRequest', detail.value).field_violations) {
        violations.push({ field: v.field, description: v.description });
      }
    }
  }
  return violations;
}

module.exports = { grpc, kato, packageDefinition, createClient, call, decode, encode, toStruct, fromStruct, fieldViolations };
