'use strict';
// Observes a short sequence, learns it, observes its start again and prints
// what KATO predicts comes next. The session is client-held: the SessionState
// each response returns is sent with the next call.
//
//   node example.js --target 127.0.0.1:50051

const { parseArgs } = require('node:util');
const { createClient, call, fieldViolations, grpc } = require('./kato');

const symbols = (events) => events.map((e) => `[${e.symbols.join(' ')}]`).join(' ');

async function main() {
  const { values: args } = parseArgs({
    options: {
      target: { type: 'string', default: '127.0.0.1:50051' },
      kb: { type: 'string', default: `example-node-${Date.now()}` },
    },
  });
  const client = createClient(args.target);
  try {
    const observe = async (state, strings) =>
      (await call(client, 'Observe', { state, observation: { strings } })).state;

    let state = { kb_id: args.kb };
    for (const event of [['hello', 'world'], ['how'], ['are', 'you']]) {
      state = await observe(state, event);
    }
    const learned = await call(client, 'Learn', { state });
    console.log(`learned ${learned.pattern_name} into ${args.kb}`);

    state = learned.state; // Learn cleared the short-term memory
    state = await observe(state, ['world', 'hello']);
    state = await observe(state, ['how']);
    const { predictions } = await call(client, 'Predict', { state });
    for (const p of predictions) {
      console.log(`prediction ${p.name}: similarity ${p.similarity.toFixed(3)}, ` +
        `present ${symbols(p.present)}, future ${symbols(p.future)}`);
    }

    // A rejected call says which field was wrong in a google.rpc.BadRequest.
    try {
      await call(client, 'UpdateConfig', { state, config: { recall_threshold: 1.5 } });
    } catch (err) {
      console.log(`UpdateConfig(recall_threshold=1.5): ${grpc.status[err.code]}`);
      for (const v of fieldViolations(err)) console.log(`  ${v.field}: ${v.description}`);
    }
  } finally {
    client.close();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
