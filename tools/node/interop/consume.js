// consume.js <queue> <n>: leases n tasks (enqueued by Go) through the Node
// client and decides each one's outcome, then prints a JSON report of what it
// saw and did, for tools/node/interop_test.go to check against Go's view:
//   {tasks: [{id, token, type, payload (base64), retried, maxRetry, timeoutMs,
//             deadlineMs, leaseUntilMs, action, result (base64), message,
//             outcome, atMs}], queueInfo}
// The j-th task leased (0-based):
//   j % 2 == 0  completed with result 00 ff + sha256(payload); every 5th of
//               them has its lease extended first
//   j % 4 == 1  failed with skip_retry            -> archived
//   j % 4 == 3  failed, retry after 10 minutes    -> 'retry', or 'archived'
//               when the task allows no retries

import { createHash } from 'node:crypto';
import { main, open } from './common.js';

main(async () => {
  const [queue, nArg] = process.argv.slice(2);
  const n = Number(nArg);
  if (!queue || !Number.isInteger(n) || n < 1) throw new Error('usage: consume.js <queue> <n>');
  const { redis, lq } = await open();
  const report = [];
  while (report.length < n) {
    const { tasks } = await lq.lease(queue, { count: 32, leaseMs: 30000 });
    if (tasks.length === 0) throw new Error(`queue ${queue} ran dry after ${report.length} of ${n} tasks`);
    for (const t of tasks) {
      const j = report.length;
      const entry = { ...t, payload: t.payload.toString('base64') };
      if (j % 2 === 0) {
        if (j % 10 === 0) {
          entry.leaseUntilMs = await lq.extend(queue, t.id, t.token, 60000);
          entry.extended = true;
        }
        const result = Buffer.concat([Buffer.from([0x00, 0xff]), createHash('sha256').update(t.payload).digest()]);
        await lq.complete(queue, t.id, t.token, { result });
        Object.assign(entry, { action: 'complete', result: result.toString('base64') });
      } else {
        const skipRetry = j % 4 === 1;
        const message = `node failed ${t.id} (${skipRetry ? 'skip' : 'retry'}) \u00e9`;
        const f = await lq.fail(queue, t.id, t.token, { message, backoffMs: 600000, skipRetry });
        Object.assign(entry, { action: skipRetry ? 'fail-skip' : 'fail-retry', message, outcome: f.outcome, atMs: f.atMs });
      }
      report.push(entry);
    }
  }
  const queueInfo = await lq.queueInfo(queue);
  redis.disconnect();
  return { tasks: report, queueInfo };
});
