// produce.js <queue> <n>: enqueues n tasks with binary payloads through the
// Node client, for a Go worker to process (tools/node/interop_test.go), and
// prints what it sent as JSON: {enqueuedAtMs, tasks: [{index, id, type,
// maxRetry, retentionMs, payload (base64), state}]}.
//
// Task i gets kind i % 6, which tells the Go side what its handler does and
// so which end state the task must reach:
//   0 'ok'     retention 60 s     -> completed, readable
//   1 'ok'     no retention       -> completed, gone
//   2 'flaky'  max_retry 3, 60 s  -> fails once, then completed (retried 1)
//   3 'fail'   max_retry 0        -> archived after one run
//   4 'fail'   max_retry 2        -> archived after three runs (retried 2)
//   5 'skip'   max_retry 10       -> archived at once (skip retry)
// Even i get the id n:<i>; odd i let the script pick one.

import { randomBytes } from 'node:crypto';
import { main, open } from './common.js';

const KINDS = [
  { type: 'ok', maxRetry: 25, retentionMs: 60000 },
  { type: 'ok', maxRetry: 25, retentionMs: 0 },
  { type: 'flaky', maxRetry: 3, retentionMs: 60000 },
  { type: 'fail', maxRetry: 0, retentionMs: 0 },
  { type: 'fail', maxRetry: 2, retentionMs: 0 },
  { type: 'skip', maxRetry: 10, retentionMs: 0 },
];

function payloadFor(i) {
  if (i % 17 === 0) return Buffer.alloc(0);
  // NUL and 0xff at both ends, ':' (the record separator) inside, random bytes between.
  return Buffer.concat([Buffer.from([0x00, 0xff, 0x3a]), randomBytes(i * 7 % 1500), Buffer.from([0x3a, 0xff, 0x00])]);
}

main(async () => {
  const [queue, nArg] = process.argv.slice(2);
  const n = Number(nArg);
  if (!queue || !Number.isInteger(n) || n < 1) throw new Error('usage: produce.js <queue> <n>');
  const { redis, lq } = await open();
  const tasks = [];
  for (let i = 0; i < n; i++) {
    const kind = KINDS[i % KINDS.length];
    tasks.push({ index: i, id: i % 2 === 0 ? `n:${i}` : '', ...kind, payload: payloadFor(i) });
  }
  let enqueuedAtMs = 0;
  for (let start = 0; start < n; start += 50) {
    const batch = tasks.slice(start, start + 50);
    const r = await lq.enqueue(queue, batch);
    enqueuedAtMs = r.enqueuedAtMs;
    r.tasks.forEach((t, j) => Object.assign(batch[j], { id: t.id, state: t.state }));
  }
  redis.disconnect();
  return {
    enqueuedAtMs,
    tasks: tasks.map((t) => ({ ...t, payload: t.payload.toString('base64') })),
  };
});
