'use strict';
// The KATO server never asks a client to come back later, so the
// RESOURCE_EXHAUSTED-with-RetryInfo path is driven by a grpc-js server of the
// test's own that does.

const assert = require('node:assert/strict');
const { test, before, after } = require('node:test');
const { KatoClient, grpc, kato: katoPackage, decode, encode } = require('..');

let server;
let target;
const calls = { Predict: 0, ClearStm: 0 };

// A google.rpc.Status with a RetryInfo detail, as the grpc-status-details-bin trailer.
function busy(delayMs) {
  const info = encode('google.rpc.RetryInfo', { retry_delay: { seconds: 0, nanos: delayMs * 1e6 } });
  const status = encode('google.rpc.Status', {
    code: grpc.status.RESOURCE_EXHAUSTED,
    message: 'busy: come back later',
    details: [{ type_url: 'type.googleapis.com/google.rpc.RetryInfo', value: info }],
  });
  const metadata = new grpc.Metadata();
  metadata.set('grpc-status-details-bin', status);
  return { code: grpc.status.RESOURCE_EXHAUSTED, details: 'busy: come back later', metadata };
}

before(async () => {
  server = new grpc.Server();
  server.addService(katoPackage.KatoService.service, {
    // Busy on the first attempt, then answers.
    Predict: (call, callback) => {
      calls.Predict += 1;
      if (calls.Predict === 1) callback(busy(20));
      else callback(null, { predictions: [], future_potentials: [] });
    },
    // Always busy: ClearStm is not safe to retry, so one attempt only.
    ClearStm: (call, callback) => {
      calls.ClearStm += 1;
      callback(busy(1));
    },
  });
  const port = await new Promise((resolve, reject) => {
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p)));
  });
  target = `127.0.0.1:${port}`;
});
after(() => server.forceShutdown());

test('RESOURCE_EXHAUSTED with RetryInfo is retried after its delay', async () => {
  const kato = new KatoClient(target);
  try {
    await kato.session('kb').predict();
    assert.equal(calls.Predict, 2);
  } finally {
    kato.close();
  }
});

test('an unsafe call is not retried even with RetryInfo', async () => {
  const kato = new KatoClient(target);
  try {
    await assert.rejects(kato.session('kb').clearStm(), (err) => {
      assert.equal(err.code, grpc.status.RESOURCE_EXHAUSTED);
      assert.equal(err.retryDelayMs, 1);
      return true;
    });
    assert.equal(calls.ClearStm, 1);
  } finally {
    kato.close();
  }
});

test('encode and decode are inverses', () => {
  const raw = busy(5).metadata.get('grpc-status-details-bin')[0];
  assert.equal(decode('google.rpc.Status', raw).details[0].type_url, 'type.googleapis.com/google.rpc.RetryInfo');
});
