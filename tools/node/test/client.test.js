// Tests of luaq.js against a real redis-server and an exported bundle.
//
//   LUAQ_REDIS_ADDR=127.0.0.1:6390 LUAQ_BUNDLE_DIR=/tmp/bundle node --test test/
//
// Without both variables every test is skipped. SCRIPT FLUSH (the NOSCRIPT
// recovery test) runs only when LUAQ_REDIS_PRIVATE=1 says the server belongs
// to this test run; the Go test tools/node/interop_test.go sets all three.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Redis from 'ioredis';
import { Luaq, LuaqError, validateQueueName } from '../luaq.js';

const addr = process.env.LUAQ_REDIS_ADDR;
const bundleDir = process.env.LUAQ_BUNDLE_DIR;
const privateServer = process.env.LUAQ_REDIS_PRIVATE === '1';
const skip = !addr || !bundleDir ? 'LUAQ_REDIS_ADDR and LUAQ_BUNDLE_DIR are not set' : false;

function connect() {
  const i = addr.lastIndexOf(':');
  return new Redis({ host: addr.slice(0, i), port: Number(addr.slice(i + 1)), maxRetriesPerRequest: 1, lazyConnect: false });
}

let seq = 0;
const run = `${process.pid}-${Date.now()}`;
// Every test uses its own queue, so the tests can share a server.
const newQueue = (name) => `node-test:${name}:${run}:${++seq}`;

// rejectsCode asserts that p rejects with a LuaqError of code.
async function rejectsCode(p, code) {
  await assert.rejects(p, (err) => {
    assert.ok(err instanceof LuaqError, `want a LuaqError, got ${err}`);
    assert.equal(err.code, code, err.message);
    return true;
  });
}

// snapshot returns every key of queue with its type and contents, to show
// that a rejected call changed nothing.
async function snapshot(redis, queue) {
  const keys = (await redis.keys(`luaq:{${queue}}:*`)).sort();
  const out = {};
  for (const k of keys) {
    const t = await redis.type(k);
    let v;
    if (t === 'hash') v = await redis.hgetallBuffer(k);
    else if (t === 'list') v = await redis.lrangeBuffer(k, 0, -1);
    else if (t === 'zset') v = await redis.zrange(k, 0, -1, 'WITHSCORES');
    else v = await redis.getBuffer(k);
    out[k] = [t, v];
  }
  return out;
}

// nastyBytes: every byte value, then NULs and 0xff runs, then random bytes.
function nastyBytes(n) {
  const b = Buffer.alloc(256 + 64 + n);
  for (let i = 0; i < 256; i++) b[i] = i;
  for (let i = 256; i < 320; i++) b[i] = i % 2 ? 0xff : 0x00;
  randomBytes(n).copy(b, 320);
  return b;
}

describe('luaq.js', { skip }, () => {
  let redis;
  let lq;

  before(async () => {
    redis = connect();
    lq = new Luaq(redis, bundleDir);
    await lq.load();
  });
  after(() => redis && redis.disconnect());

  test('keys follow key_pattern and the roles in order; queue names are validated', () => {
    assert.deepEqual(lq.keys('extend', 'q:$&1'), ['luaq:{q:$&1}:meta', 'luaq:{q:$&1}:active', 'luaq:{q:$&1}:tokens']);
    for (const bad of ['', 'a b', 'a{b', 'a}b', 'é', 'x'.repeat(129), 'tab\t']) {
      assert.throws(() => validateQueueName(bad), TypeError, JSON.stringify(bad));
      assert.throws(() => lq.keys('extend', bad), TypeError);
    }
    validateQueueName('x'.repeat(128));
    validateQueueName('a:b-c_d.e!~');
  });

  test('ARGV comes from the manifest names; unknown and missing arguments are refused', async () => {
    assert.deepEqual(lq.argv('extend', { id: 'a', token: 7, lease_ms: 10n }), ['a', '7', '10']);
    assert.deepEqual(lq.argv('retry-or-archive', { id: 'a', token: '3', message: 'm', backoff_ms: 0, skip_retry: true }),
      ['a', '3', Buffer.from('m'), '0', '1']);
    assert.throws(() => lq.argv('extend', { id: 'a', token: 1, lease_ms: 1, extra: 1 }), /no argument extra/);
    assert.throws(() => lq.argv('extend', { id: 'a', token: 1 }), /lease_ms is missing/);
    assert.throws(() => lq.argv('extend', { id: 'a', token: 1.5, lease_ms: 1 }), /token must be/);
    const dereg = lq.argv('deregister', { worker_id: 'w', groups: [{ id: 'a', token: 1 }, { id: 'b', token: 2 }] });
    assert.deepEqual(dereg, ['w', 'a', '1', 'b', '2']);
    await assert.rejects(lq.call('no-such-script', 'q', {}), /no script/);
  });

  test('error replies map to LuaqError by their first word, also after ERR', () => {
    const e1 = lq._mapError('extend', new Error('LQ_LEASE_LOST task a is not leased under token 3'));
    assert.ok(e1 instanceof LuaqError);
    assert.equal(e1.code, 'LQ_LEASE_LOST');
    assert.equal(e1.detail, 'task a is not leased under token 3');
    const e2 = lq._mapError('clean', new Error('ERR LQ_NOT_OWNER'));
    assert.equal(e2.code, 'LQ_NOT_OWNER');
    for (const other of ['OOM command not allowed', 'LQ_UNKNOWN x', 'NOSCRIPT No matching script']) {
      const err = new Error(other);
      assert.equal(lq._mapError('extend', err), err, other);
    }
  });

  test('enqueue, lease, extend, complete with retention and lease-next', async () => {
    const q = newQueue('roundtrip');
    const e = await lq.enqueue(q, [
      { id: 'a', type: 'email', payload: Buffer.from('one'), retentionMs: 60000, timeoutMs: 5000 },
      { type: 'email', payload: 'two', maxRetry: 3 },
    ]);
    assert.equal(e.tasks.length, 2);
    assert.equal(e.tasks[0].id, 'a');
    assert.equal(e.tasks[0].state, 'pending');
    assert.match(e.tasks[1].id, /\S+/);
    assert.ok(e.enqueuedAtMs > 0);

    const l = await lq.lease(q, { count: 1, leaseMs: 10000 });
    assert.equal(l.tasks.length, 1);
    const [t] = l.tasks;
    assert.deepEqual({ ...t, token: 0, leaseUntilMs: 0 }, {
      id: 'a', token: 0, type: 'email', payload: Buffer.from('one'), retried: 0, maxRetry: 25,
      timeoutMs: 5000, deadlineMs: 0, leaseUntilMs: 0,
    });
    assert.ok(t.leaseUntilMs >= e.enqueuedAtMs + 10000);
    assert.equal((await lq.taskInfo(q, 'a')).state, 'active');

    const until = await lq.extend(q, 'a', t.token, 60000);
    assert.ok(until >= t.leaseUntilMs);
    assert.equal((await lq.taskInfo(q, 'a')).stateAtMs, until);

    const next = await lq.complete(q, 'a', t.token, { result: Buffer.from('done'), nextCount: 5, leaseMs: 10000, promoteLimit: 10 });
    assert.equal(next.tasks.length, 1);
    assert.equal(next.tasks[0].id, e.tasks[1].id);
    assert.equal(next.tasks[0].maxRetry, 3);
    assert.ok(next.tasks[0].token > t.token, 'tokens only grow');

    const info = await lq.taskInfo(q, 'a');
    assert.equal(info.state, 'completed');
    assert.deepEqual(info.result, Buffer.from('done'));
    assert.equal(info.retentionMs, 60000);

    const none = await lq.complete(q, next.tasks[0].id, next.tasks[0].token);
    assert.deepEqual(none, { tasks: [], nextDueMs: -1, paused: false });
    await rejectsCode(lq.taskInfo(q, next.tasks[0].id), 'LQ_NOTFOUND'); // no retention: gone

    const empty = await lq.lease(q, { count: 10 });
    assert.deepEqual(empty, { tasks: [], nextDueMs: -1, paused: false });
    const qi = await lq.queueInfo(q);
    assert.deepEqual(qi, {
      pending: 0, scheduled: 0, active: 0, archived: 0, completed: 1, paused: false,
      processed: 2, failed: 0, retried: 0, archivedTotal: 0, expired: 0,
    });
  });

  test('fail: retry after backoff, archive when retries run out or on skipRetry', async () => {
    const q = newQueue('fail');
    await lq.enqueue(q, [
      { id: 'r', type: 't', maxRetry: 1 },
      { id: 's', type: 't', maxRetry: 5 },
    ]);
    let l = await lq.lease(q, { count: 2 });
    const tok = Object.fromEntries(l.tasks.map((t) => [t.id, t.token]));

    const f1 = await lq.fail(q, 'r', tok.r, { message: 'first', backoffMs: 0 });
    assert.equal(f1.outcome, 'retry');
    const f2 = await lq.fail(q, 's', tok.s, { message: 'no way', skipRetry: true });
    assert.equal(f2.outcome, 'archived');
    const s = await lq.taskInfo(q, 's');
    assert.equal(s.state, 'archived');
    assert.equal(s.lastError, 'no way');
    assert.equal(s.stateAtMs, f2.atMs);
    assert.equal(s.retried, 0);

    l = await lq.lease(q, { count: 2 }); // promotes the due retry
    assert.equal(l.tasks.length, 1);
    assert.equal(l.tasks[0].id, 'r');
    assert.equal(l.tasks[0].retried, 1);
    const f3 = await lq.fail(q, 'r', l.tasks[0].token, { message: 'second', backoffMs: 1000 });
    assert.equal(f3.outcome, 'archived');
    const r = await lq.taskInfo(q, 'r');
    assert.equal(r.state, 'archived');
    assert.equal(r.lastError, 'second');

    const qi = await lq.queueInfo(q);
    assert.equal(qi.archived, 2);
    assert.equal(qi.failed, 3);
    assert.equal(qi.retried, 1);
    assert.equal(qi.archivedTotal, 2);
  });

  test('a retry with a long backoff stays scheduled and lease says when it is due', async () => {
    const q = newQueue('backoff');
    await lq.enqueue(q, [{ id: 'x', type: 't' }]);
    const [t] = (await lq.lease(q)).tasks;
    const f = await lq.fail(q, 'x', t.token, { message: 'later', backoffMs: 50000 });
    assert.equal(f.outcome, 'retry');
    const info = await lq.taskInfo(q, 'x');
    assert.equal(info.state, 'retry');
    assert.equal(info.stateAtMs, f.atMs);
    const l = await lq.lease(q);
    assert.equal(l.tasks.length, 0);
    assert.ok(l.nextDueMs > 40000 && l.nextDueMs <= 50000, String(l.nextDueMs));
  });

  test('requeue puts the task at the head of pending without counting a retry', async () => {
    const q = newQueue('requeue');
    await lq.enqueue(q, [{ id: 'a', type: 't' }, { id: 'b', type: 't' }]);
    const [a] = (await lq.lease(q)).tasks;
    await lq.requeue(q, 'a', a.token);
    const again = (await lq.lease(q, { count: 2 })).tasks;
    assert.deepEqual(again.map((t) => t.id), ['a', 'b']);
    assert.equal(again[0].retried, 0);
    await rejectsCode(lq.requeue(q, 'a', a.token), 'LQ_LEASE_LOST');
  });

  test('binary payloads and results round-trip byte for byte', async () => {
    const q = newQueue('binary');
    const payloads = [
      nastyBytes(0),
      Buffer.from([0]),
      Buffer.from([0xff]),
      Buffer.alloc(0),
      Buffer.from([0x00, 0xff, 0x3a, 0x00, 0x31, 0x3a]), // NUL, 0xff, and ':' the record separator
      nastyBytes(1 << 20),
    ];
    const e = await lq.enqueue(q, payloads.map((payload, i) => ({ id: `p${i}`, type: 'bin', payload, retentionMs: 60000 })));
    for (let i = 0; i < payloads.length; i++) {
      assert.ok((await lq.taskInfo(q, e.tasks[i].id)).payload.equals(payloads[i]), `taskInfo payload ${i}`);
    }
    const l = await lq.lease(q, { count: payloads.length });
    assert.equal(l.tasks.length, payloads.length);
    for (const [i, t] of l.tasks.entries()) {
      assert.equal(t.id, `p${i}`);
      assert.ok(Buffer.isBuffer(t.payload));
      assert.ok(t.payload.equals(payloads[i]), `leased payload ${i}: ${t.payload.length} bytes, want ${payloads[i].length}`);
      const result = Buffer.concat([Buffer.from([0xff, 0x00]), payloads[i]]);
      await lq.complete(q, t.id, t.token, { result });
      const info = await lq.taskInfo(q, t.id);
      assert.ok(info.result.equals(result), `result ${i}`);
    }
    // Binary error messages round-trip too.
    await lq.enqueue(q, [{ id: 'm', type: 'bin' }]);
    const [m] = (await lq.lease(q)).tasks;
    await lq.fail(q, 'm', m.token, { message: Buffer.from([0x00, 0xff, 0x41]), skipRetry: true });
    const raw = await lq.call('task-info', q, { id: 'm' });
    assert.deepEqual(raw[11], Buffer.from([0x00, 0xff, 0x41]));
  });

  test('error codes: stale token, duplicate id, bad argument, not found; nothing changes', async () => {
    const q = newQueue('errors');
    await lq.enqueue(q, [{ id: 'dup', type: 't', payload: 'x' }]);
    const [t] = (await lq.lease(q)).tasks;

    let before = await snapshot(redis, q);
    await rejectsCode(lq.enqueue(q, [{ id: 'fresh', type: 't' }, { id: 'dup', type: 't' }]), 'LQ_CONFLICT');
    await rejectsCode(lq.extend(q, 'dup', t.token + 1, 1000), 'LQ_LEASE_LOST');
    await rejectsCode(lq.complete(q, 'dup', t.token + 2), 'LQ_LEASE_LOST');
    await rejectsCode(lq.fail(q, 'dup', t.token + 100, { message: 'x' }), 'LQ_LEASE_LOST');
    await rejectsCode(lq.requeue(q, 'dup', t.token + 3), 'LQ_LEASE_LOST');
    await rejectsCode(lq.lease(q, { count: 0 }), 'LQ_BADARG');
    await rejectsCode(lq.enqueue(q, [{ type: 'has space' }]), 'LQ_BADARG');
    await rejectsCode(lq.call('extend', q, ['dup', '1']), 'LQ_BADARG'); // wrong ARGV count
    await rejectsCode(lq.requeue(q, 'dup', 0), 'LQ_BADARG'); // tokens start at 1
    await rejectsCode(lq.taskInfo(q, 'nope'), 'LQ_NOTFOUND');
    assert.deepEqual(await snapshot(redis, q), before, 'rejected calls left the keyspace unchanged');

    // A zombie: the lease moves on (requeue, then another lease); the old
    // token can never complete the task again.
    await lq.requeue(q, 'dup', t.token);
    const [t2] = (await lq.lease(q)).tasks;
    before = await snapshot(redis, q);
    await rejectsCode(lq.complete(q, 'dup', t.token), 'LQ_LEASE_LOST');
    assert.deepEqual(await snapshot(redis, q), before);
    await lq.complete(q, 'dup', t2.token);

    const err = await lq.taskInfo(q, 'dup').catch((e) => e);
    assert.ok(err instanceof LuaqError);
    assert.equal(err.script, 'task-info');
    assert.match(err.message, /^LQ_NOTFOUND /);
  });

  test('NOSCRIPT: after SCRIPT FLUSH a call loads the bundle and retries', { skip: privateServer ? false : 'LUAQ_REDIS_PRIVATE is not 1: SCRIPT FLUSH would affect a shared server' }, async () => {
    const q = newQueue('noscript');
    await lq.enqueue(q, [{ id: 'a', type: 't', payload: Buffer.from([0, 0xff]) }]);
    await redis.script('FLUSH');
    const sha = lq.manifest.scripts.find((s) => s.name === 'dequeue').sha1;
    assert.deepEqual(await redis.script('EXISTS', sha), [0]);
    const l = await lq.lease(q);
    assert.equal(l.tasks[0].id, 'a');
    assert.deepEqual(l.tasks[0].payload, Buffer.from([0, 0xff]));
    const all = lq.manifest.scripts.map((s) => s.sha1);
    assert.deepEqual(await redis.script('EXISTS', ...all), all.map(() => 1), 'every script is loaded again');

    // A fresh client on a flushed server works without load().
    await redis.script('FLUSH');
    const other = new Luaq(redis, bundleDir);
    await other.complete(q, 'a', l.tasks[0].token);
    assert.equal((await other.queueInfo(q)).processed, 1);
  });

  test('a bundle file that does not match its manifest SHA-1 is refused', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'luaq-bundle-'));
    try {
      await cp(bundleDir, dir, { recursive: true });
      await writeFile(path.join(dir, 'extend.lua'), '-- tampered\nreturn 1\n');
      await assert.rejects(new Luaq(redis, dir).load(), /extend\.lua: SHA-1 .* differs/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
