// luaq.js — a small Node.js client of the luaq Lua bundle.
//
// It is written from an exported bundle directory alone (manifest.json plus one
// flattened <name>.lua per script, as written by `Bundle.Export` / `luaq bundle
// export`) and ioredis. Key names come from the manifest's key_pattern and each
// script's KEYS roles, ARGV from each script's argv names and types, and calls
// go by EVALSHA with the manifest's sha1. Nothing is copied from the Go SDK
// except the decoding of replies (their layout is prose in the manifest) and
// the defaults of the convenience methods.

import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';

/** An error reply of a luaq script: `.code` is its first word (e.g. LQ_LEASE_LOST). */
export class LuaqError extends Error {
  constructor(code, message, script) {
    super(`${code} ${message}`.trimEnd());
    this.name = 'LuaqError';
    this.code = code;
    this.detail = message;
    this.script = script;
  }
}

/** Longest queue name, in bytes (the spec's limit). */
export const MAX_QUEUE_NAME_LEN = 128;

/**
 * validateQueueName throws a TypeError unless name is 1..128 bytes of
 * printable ASCII (0x21..0x7e) without '{' or '}' (a brace would break the
 * queue's hash tag).
 */
export function validateQueueName(name) {
  if (typeof name !== 'string' || name.length === 0) {
    throw new TypeError('luaq: queue name must be a non-empty string');
  }
  if (name.length > MAX_QUEUE_NAME_LEN) {
    throw new TypeError(`luaq: queue name is ${name.length} bytes, the limit is ${MAX_QUEUE_NAME_LEN}`);
  }
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c < 0x21 || c > 0x7e) {
      throw new TypeError(`luaq: queue name ${JSON.stringify(name)} has a byte 0x${c.toString(16)} at ${i}: only printable ASCII without spaces is allowed`);
    }
    if (c === 0x7b || c === 0x7d) {
      throw new TypeError(`luaq: queue name ${JSON.stringify(name)} contains a brace, which would break its hash tag`);
    }
  }
}

const INT_RE = /^-?\d+$/;

// encodeArg turns one argument value into what goes on the wire, by the
// manifest's type: int -> decimal string, flag -> '1'/'0', bytes -> Buffer,
// string -> string (a Buffer is passed through).
function encodeArg(script, name, type, v) {
  const bad = (want) => new TypeError(`luaq: ${script}: argument ${name} must be ${want}`);
  if (v === undefined || v === null) {
    throw new TypeError(`luaq: ${script}: argument ${name} is missing`);
  }
  switch (type) {
    case 'int':
      if (typeof v === 'bigint') return v.toString(10);
      if (typeof v === 'number') {
        if (!Number.isSafeInteger(v)) throw bad('a safe integer');
        return v.toString(10);
      }
      if (typeof v === 'string' && INT_RE.test(v)) return v;
      throw bad('an integer');
    case 'flag':
      if (v === true || v === 1 || v === '1') return '1';
      if (v === false || v === 0 || v === '0') return '0';
      throw bad('a boolean');
    case 'bytes':
      if (Buffer.isBuffer(v)) return v;
      if (v instanceof Uint8Array) return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
      if (typeof v === 'string') return Buffer.from(v, 'utf8');
      throw bad('a Buffer, Uint8Array or string');
    default: // 'string' and any type this client does not know
      if (typeof v === 'string' || Buffer.isBuffer(v)) return v;
      if (typeof v === 'number' && Number.isSafeInteger(v)) return v.toString(10);
      throw bad('a string');
  }
}

// Replies come as Buffers (bulk strings), numbers (integers) and arrays.
const str = (v) => (Buffer.isBuffer(v) ? v.toString('utf8') : v === null || v === undefined ? '' : String(v));
const num = (v) => {
  if (typeof v === 'number') return v;
  const n = Number(str(v));
  if (!Number.isFinite(n)) throw new Error(`luaq: expected a number in the reply, got ${str(v)}`);
  return n;
};
const buf = (v) => (Buffer.isBuffer(v) ? v : Buffer.from(str(v), 'utf8'));

// decodeLease decodes the reply shared by dequeue and complete:
// leased, next_due_in_ms, paused, then 9 values per leased task.
function decodeLease(r) {
  const leased = num(r[0]);
  const tasks = [];
  for (let i = 0; i < leased; i++) {
    const o = 3 + 9 * i;
    tasks.push({
      id: str(r[o]),
      token: num(r[o + 1]),
      type: str(r[o + 2]),
      payload: buf(r[o + 3]),
      retried: num(r[o + 4]),
      maxRetry: num(r[o + 5]),
      timeoutMs: num(r[o + 6]),
      deadlineMs: num(r[o + 7]),
      leaseUntilMs: num(r[o + 8]),
    });
  }
  if (r.length !== 3 + 9 * leased) {
    throw new Error(`luaq: lease reply of ${r.length} values for ${leased} tasks`);
  }
  return { tasks, nextDueMs: num(r[1]), paused: num(r[2]) === 1 };
}

const camel = (s) => s.replace(/_([a-z])/g, (_, c) => c.toUpperCase());

export class Luaq {
  /**
   * @param redis an ioredis Redis (or Cluster) connection
   * @param bundleDir a directory holding manifest.json and the <name>.lua files
   */
  constructor(redis, bundleDir) {
    this.redis = redis;
    this.bundleDir = bundleDir;
    this.manifest = null;
    this.scripts = new Map(); // name -> { entry, source, fixed, repeated }
    this.errorCodes = new Set();
    this._reading = null;
  }

  /** Reads the bundle (checking every file against its manifest SHA-1) and loads every script into Redis. */
  async load() {
    await this._read();
    await this._loadScripts();
    return this;
  }

  _read() {
    if (!this._reading) {
      this._reading = this._readBundle().catch((err) => {
        this._reading = null;
        throw err;
      });
    }
    return this._reading;
  }

  async _readBundle() {
    const manifest = JSON.parse(await readFile(path.join(this.bundleDir, 'manifest.json'), 'utf8'));
    if (typeof manifest.key_pattern !== 'string' || !manifest.key_pattern.includes('<queue>') || !manifest.key_pattern.includes('<role>')) {
      throw new Error('luaq: manifest.json has no usable key_pattern');
    }
    const scripts = new Map();
    for (const entry of manifest.scripts) {
      const source = await readFile(path.join(this.bundleDir, entry.file || `${entry.name}.lua`));
      const sha = createHash('sha1').update(source).digest('hex');
      if (sha !== entry.sha1) {
        throw new Error(`luaq: ${entry.file}: SHA-1 ${sha} differs from the manifest's ${entry.sha1}`);
      }
      const argv = entry.argv || [];
      scripts.set(entry.name, {
        entry,
        source,
        fixed: argv.filter((a) => !a.repeated),
        repeated: argv.filter((a) => a.repeated),
      });
    }
    this.manifest = manifest;
    this.scripts = scripts;
    this.errorCodes = new Set(manifest.errors.map((e) => e.code));
  }

  // _loadScripts runs SCRIPT LOAD for every script on the connection's node
  // (on every node, masters and replicas, of an ioredis Cluster) and checks
  // the SHA Redis returns.
  async _loadScripts() {
    const nodes = this.redis.isCluster && typeof this.redis.nodes === 'function' ? this.redis.nodes('all') : [this.redis];
    await Promise.all(nodes.flatMap((node) => [...this.scripts.values()].map(async ({ entry, source }) => {
      const got = str(await node.script('LOAD', source));
      if (got !== entry.sha1) {
        throw new Error(`luaq: SCRIPT LOAD ${entry.name} returned ${got}, the manifest says ${entry.sha1}`);
      }
    })));
  }

  _script(name) {
    const s = this.scripts.get(name);
    if (!s) throw new TypeError(`luaq: the bundle has no script ${JSON.stringify(name)}`);
    return s;
  }

  /** keys returns the KEYS of script for queue: key_pattern filled with each role, in order. */
  keys(script, queue) {
    validateQueueName(queue);
    const pattern = this.manifest.key_pattern;
    // split/join, not String.replace: a queue name may hold '$' sequences.
    return this._script(script).entry.keys.map((k) => pattern.split('<queue>').join(queue).split('<role>').join(k.role));
  }

  /**
   * argv builds the ARGV of script from an object keyed by the manifest's
   * argument names; the repeated group (if the script has one) comes as
   * `groups`, an array of objects keyed by the repeated arguments' names. An
   * array is taken as the ARGV itself, in order (each value still encoded).
   */
  argv(script, args) {
    const s = this._script(script);
    if (Array.isArray(args)) {
      return args.map((v, i) => {
        const spec = i < s.fixed.length ? s.fixed[i] : s.repeated[(i - s.fixed.length) % Math.max(1, s.repeated.length)];
        return encodeArg(script, spec ? spec.name : `#${i + 1}`, spec ? spec.type : 'string', v);
      });
    }
    const obj = args || {};
    const known = new Set(s.fixed.map((a) => a.name));
    if (s.repeated.length > 0) known.add('groups');
    for (const k of Object.keys(obj)) {
      if (!known.has(k)) throw new TypeError(`luaq: ${script} has no argument ${k}`);
    }
    const out = s.fixed.map((a) => encodeArg(script, a.name, a.type, obj[a.name]));
    if (s.repeated.length > 0) {
      const groups = obj.groups || [];
      if (!Array.isArray(groups)) throw new TypeError(`luaq: ${script}: groups must be an array`);
      const names = new Set(s.repeated.map((a) => a.name));
      for (const g of groups) {
        for (const k of Object.keys(g)) {
          if (!names.has(k)) throw new TypeError(`luaq: ${script} has no repeated argument ${k}`);
        }
        for (const a of s.repeated) out.push(encodeArg(script, a.name, a.type, g[a.name]));
      }
    }
    return out;
  }

  /**
   * call runs one script on one queue by EVALSHA and returns its raw reply
   * (bulk strings as Buffers, integers as numbers). On NOSCRIPT it loads the
   * bundle and retries once. A luaq error reply throws a LuaqError.
   */
  async call(script, queue, args) {
    await this._read();
    const s = this._script(script);
    const keys = this.keys(script, queue);
    const argv = this.argv(script, args);
    const run = () => this.redis.evalshaBuffer(s.entry.sha1, keys.length, ...keys, ...argv);
    try {
      try {
        return await run();
      } catch (err) {
        if (!String(err && err.message).startsWith('NOSCRIPT')) throw err;
        await this._loadScripts();
        return await run();
      }
    } catch (err) {
      throw this._mapError(script, err);
    }
  }

  // _mapError turns an error reply '<CODE> <message>' whose CODE is in the
  // manifest's error table into a LuaqError (also after an 'ERR ' prefix,
  // which some servers add to one-word replies); other errors pass unchanged.
  _mapError(script, err) {
    let msg = String(err && err.message);
    if (msg.startsWith('ERR LQ_')) msg = msg.slice(4);
    const sp = msg.indexOf(' ');
    const code = sp < 0 ? msg : msg.slice(0, sp);
    if (this.errorCodes.has(code)) {
      const e = new LuaqError(code, sp < 0 ? '' : msg.slice(sp + 1), script);
      e.cause = err;
      return e;
    }
    return err;
  }

  /**
   * enqueue adds 1..1000 tasks. Each task: { type, payload, id?, maxRetry?
   * (default 25), timeoutMs?, deadlineMs?, processAtMs?, processInMs?,
   * expireAtMs?, expireInMs?, expireArchive?, retentionMs?, uniqueKey?,
   * uniqueTtlMs? }; absent values are 0 / '' / false ("none").
   * Returns { enqueuedAtMs, tasks: [{ id, state, dueMs }] }.
   */
  async enqueue(queue, tasks) {
    if (!Array.isArray(tasks) || tasks.length === 0) throw new TypeError('luaq: enqueue: want 1..1000 tasks');
    await this._read();
    const defaults = { id: '', payload: Buffer.alloc(0), max_retry: 25, expire_archive: false, unique_key: '' };
    const groups = tasks.map((t) => {
      const g = {};
      for (const a of this._script('enqueue').repeated) {
        const v = t[camel(a.name)] ?? t[a.name];
        g[a.name] = v ?? (a.name in defaults ? defaults[a.name] : a.type === 'int' ? 0 : undefined);
      }
      return g;
    });
    const r = await this.call('enqueue', queue, { count: tasks.length, groups });
    return {
      enqueuedAtMs: num(r[0]),
      tasks: tasks.map((_, i) => ({ id: str(r[1 + 3 * i]), state: str(r[2 + 3 * i]), dueMs: num(r[3 + 3 * i]) })),
    };
  }

  /** lease runs dequeue: { tasks: [...], nextDueMs, paused }. */
  async lease(queue, { count = 1, leaseMs = 30000, promoteLimit = 100, reclaimLimit = 10, reclaimBackoffMs = 1000 } = {}) {
    const r = await this.call('dequeue', queue, {
      count, lease_ms: leaseMs, promote_limit: promoteLimit, reclaim_limit: reclaimLimit, reclaim_backoff_ms: reclaimBackoffMs,
    });
    return decodeLease(r);
  }

  /** extend renews a lease; returns the new lease deadline (Unix ms). */
  async extend(queue, id, token, leaseMs) {
    return num(await this.call('extend', queue, { id, token, lease_ms: leaseMs }));
  }

  /** complete finishes a leased task; with nextCount > 0 it leases more (same shape as lease). */
  async complete(queue, id, token, { result = Buffer.alloc(0), nextCount = 0, leaseMs = 0, promoteLimit = 0 } = {}) {
    const r = await this.call('complete', queue, { id, token, result, next_count: nextCount, lease_ms: leaseMs, promote_limit: promoteLimit });
    return decodeLease(r);
  }

  /** fail records a failed run: { outcome: 'retry' | 'archived', atMs }. */
  async fail(queue, id, token, { message = '', backoffMs = 0, skipRetry = false } = {}) {
    const r = await this.call('retry-or-archive', queue, { id, token, message, backoff_ms: backoffMs, skip_retry: skipRetry });
    return { outcome: str(r[0]), atMs: num(r[1]) };
  }

  /** requeue gives a leased task back to the head of pending without counting a retry. */
  async requeue(queue, id, token) {
    await this.call('requeue', queue, { id, token });
  }

  /** taskInfo reads one task (LuaqError LQ_NOTFOUND when there is none). */
  async taskInfo(queue, id) {
    const r = await this.call('task-info', queue, { id });
    return {
      id,
      state: str(r[0]),
      stateAtMs: num(r[1]),
      type: str(r[2]),
      payload: buf(r[3]),
      retried: num(r[4]),
      maxRetry: num(r[5]),
      timeoutMs: num(r[6]),
      deadlineMs: num(r[7]),
      expireAtMs: num(r[8]),
      retentionMs: num(r[9]),
      enqueuedMs: num(r[10]),
      lastError: str(r[11]),
      result: buf(r[12]).length > 0 ? buf(r[12]) : null,
    };
  }

  /** queueInfo reads a queue's sizes and counters, keyed by the reply's names in camelCase. */
  async queueInfo(queue) {
    const r = await this.call('queue-info', queue, {});
    const out = {};
    for (let i = 0; i + 1 < r.length; i += 2) out[camel(str(r[i]))] = num(r[i + 1]);
    out.paused = out.paused === 1;
    return out;
  }
}
