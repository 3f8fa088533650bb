'use strict';
// A real server for the tests: `python -m kato_grpc serve` from this
// repository on a loopback port, with a data directory of the test's own.
// KATO_PYTHON names the interpreter (default: the repository's .venv).

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn } = require('node:child_process');
const readline = require('node:readline');
const { grpc } = require('..');

const ROOT = process.env.KATO_ROOT || path.resolve(__dirname, '..', '..', '..');
const PYTHON = process.env.KATO_PYTHON || path.join(ROOT, '.venv', 'bin', 'python');
const LISTENING = /listening on ([\d.]+:\d+)/;

/** Why there is no server to test against, or '' when there is one. */
function missing() {
  return fs.existsSync(PYTHON) ? '' : `no server to test against: set KATO_PYTHON or run make setup (${PYTHON} not found)`;
}

/** Skip options for node:test: skip without a server, unless CI is 1/true/yes (then the test fails). */
function needServer() {
  const why = missing();
  const ci = ['1', 'true', 'yes'].includes((process.env.CI || '').trim().toLowerCase());
  return why && !ci ? { skip: why } : {};
}

function tempDir() {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'kato-node-test-'));
}

/** Waits until the health service at `target` answers SERVING. */
async function waitServing(target, output) {
  const health = new grpc.Client(target, grpc.credentials.createInsecure());
  const check = () => new Promise((resolve, reject) => {
    health.makeUnaryRequest('/grpc.health.v1.Health/Check', () => Buffer.alloc(0), (b) => b,
      Buffer.alloc(0), new grpc.Metadata({ waitForReady: true }), { deadline: new Date(Date.now() + 60000) },
      (err, reply) => (err ? reject(err) : resolve(reply)));
  });
  try {
    for (;;) {
      const reply = await check().catch((err) => { throw new Error(`health check: ${err.message}\n${output.join('')}`); });
      // HealthCheckResponse{status: SERVING} is the two bytes 08 01.
      if (reply.length === 2 && reply[0] === 0x08 && reply[1] === 0x01) return;
      await new Promise((resolve) => setTimeout(resolve, 20)); // NOT_SERVING: back ends still starting
    }
  } finally {
    health.close();
  }
}

/** Starts a server on `port` ('0': any) over `dataDir`; resolves when it serves. */
async function startServer({ dataDir = tempDir(), port = '0' } = {}) {
  const why = missing();
  if (why) throw new Error(why);
  const child = spawn(PYTHON, ['-m', 'kato_grpc', 'serve', '--host', '127.0.0.1', '--port', port, '--data-dir', dataDir], {
    cwd: ROOT,
    env: { ...process.env, PYTHONPATH: [ROOT, path.join(ROOT, 'clients', 'python')].join(path.delimiter) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output = [];
  child.stderr.on('data', (chunk) => output.push(chunk.toString()));
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const target = await new Promise((resolve, reject) => {
    const guard = setTimeout(() => reject(new Error(`server did not listen:\n${output.join('')}`)), 120000); // hang guard
    readline.createInterface({ input: child.stdout }).on('line', (line) => {
      output.push(`${line}\n`);
      const m = LISTENING.exec(line);
      if (m) {
        clearTimeout(guard);
        resolve(m[1]);
      }
    });
    exited.then(() => {
      clearTimeout(guard);
      reject(new Error(`server exited before listening:\n${output.join('')}`));
    });
  });
  await waitServing(target, output);
  return {
    target,
    dataDir,
    port: target.split(':').pop(),
    output,
    signal: (sig) => child.kill(sig),
    /** Kills the server at once; resolves once it is gone. */
    kill: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
    /** Asks it to drain and stop; resolves once it is gone. */
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

module.exports = { startServer, needServer, tempDir, ROOT };
