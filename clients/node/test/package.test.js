'use strict';
// The package as npm packs it: it carries the contract (protos/, copied by
// prepack) and loads outside the repository. Run with --test-concurrency=1: the
// prepack copy appears in this directory while npm packs.

const assert = require('node:assert/strict');
const { test } = require('node:test');

test('the packed package carries the contract and loads on its own', async () => {
  const fs = require('node:fs');
  const os = require('node:os');
  const path = require('node:path');
  const { execFileSync } = require('node:child_process');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kato-node-pack-'));
  try {
    const here = path.resolve(__dirname, '..');
    const tarball = execFileSync('npm', ['pack', '--silent', '--pack-destination', dir], { cwd: here, encoding: 'utf8' }).trim();
    execFileSync('tar', ['-xzf', path.join(dir, tarball), '-C', dir]);
    assert.ok(fs.existsSync(path.join(dir, 'package', 'protos', 'kato', 'v1', 'kato_service.proto')));
    assert.ok(!fs.existsSync(path.join(here, 'protos')), 'postpack leaves no copy behind');
    // Outside the repository, with only the dependencies: the package finds its own protos.
    const env = { ...process.env, NODE_PATH: path.join(here, 'node_modules') };
    delete env.KATO_PROTO_DIR;
    const out = execFileSync(process.execPath, ['-e', "console.log(typeof require('./package').KatoClient)"], { cwd: dir, env, encoding: 'utf8' });
    assert.equal(out.trim(), 'function');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
