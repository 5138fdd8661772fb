// Conformance runner: replays the shared luaq conformance vectors
// (scripts/testdata/conformance/*.json, format in CONFORMANCE.md) against a
// real Redis server, calling the exported bundle by EVALSHA through ioredis
// directly (not through luaq.js), and compares every reply, every error code
// and the keyspace with the vectors' placeholder rules.
//
// Environment:
//   LUAQ_BUNDLE_DIR    exported bundle: manifest.json and <script>.lua (required)
//   LUAQ_VECTORS_DIR   directory of *.json vectors (required)
//   LUAQ_REDIS_ADDR    host:port of the server (or LUAQ_REDIS_URL, a redis:// URL)
//   LUAQ_CONFORMANCE_TOLERANCE_MS  how far an instant may lag (default 2000)
//   LUAQ_CONFORMANCE_ONLY          comma-separated vector names to run (default all)
//
// Each scenario runs on queues whose names get a fresh prefix (so no key of
// anyone else is touched), and its keys are deleted afterwards. Prints one
// line per vector and a summary; exits 1 on any mismatch, 2 on a setup error.

import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import Redis from 'ioredis';

const FORMAT = 'luaq-conformance/1';
const DAY_MS = 86400000;

class SetupError extends Error {}

function env(name, required) {
  const v = process.env[name];
  if (required && !v) throw new SetupError(`${name} is not set`);
  return v;
}

// ---- placeholders and string patterns ----

const PLACEHOLDER = /^(t|day)([+-][0-9]+)?$|^wait:([0-9]+)$/;

function parseText(s) {
  const segs = [];
  for (;;) {
    const i = s.indexOf('${');
    if (i < 0) {
      if (s !== '') segs.push({ lit: Buffer.from(s, 'utf8') });
      return segs;
    }
    if (i > 0) segs.push({ lit: Buffer.from(s.slice(0, i), 'utf8') });
    const j = s.indexOf('}', i);
    if (j < 0) throw new Error(`unterminated placeholder in ${JSON.stringify(s)}`);
    const inner = s.slice(i + 2, j);
    const m = PLACEHOLDER.exec(inner);
    if (!m) throw new Error(`unknown placeholder \${${inner}}`);
    if (m[3] !== undefined) segs.push({ ph: { kind: 'wait', n: Number(m[3]) } });
    else segs.push({ ph: { kind: m[1], n: m[2] ? Number(m[2]) : 0 } });
    s = s.slice(j + 1);
  }
}

function isObject(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

// pattern parses a string value: text, {"hex": ...} or {"concat": [...]}.
function pattern(v) {
  if (typeof v === 'string') return parseText(v);
  if (isObject(v) && Object.keys(v).length === 1) {
    if (typeof v.hex === 'string') {
      if (!/^([0-9a-fA-F]{2})*$/.test(v.hex)) throw new Error(`bad hex ${JSON.stringify(v.hex)}`);
      return [{ lit: Buffer.from(v.hex, 'hex') }];
    }
    if (Array.isArray(v.concat)) return v.concat.flatMap(pattern);
  }
  throw new Error(`not a string value: ${JSON.stringify(v)}`);
}

function phValue(ph, c) {
  if (ph.kind === 't') return c.t + ph.n;
  if (ph.kind === 'day') return c.day + ph.n;
  throw new Error(`\${wait:${ph.n}} is only allowed in expected values`);
}

function phAccepts(ph, v, c) {
  if (ph.kind === 't') return v >= c.t + ph.n && v <= c.t + ph.n + c.tol;
  if (ph.kind === 'day') return v === c.day + ph.n;
  return v <= ph.n && v >= Math.max(0, ph.n - c.tol);
}

function phDescribe(ph, c) {
  if (ph.kind === 't') return `${c.t + ph.n}..${c.t + ph.n + c.tol}`;
  if (ph.kind === 'day') return `${c.day + ph.n}`;
  return `${Math.max(0, ph.n - c.tol)}..${ph.n}`;
}

// expand gives a pattern's bytes with exact placeholder values.
function expand(segs, c) {
  return Buffer.concat(segs.map((s) => (s.ph ? Buffer.from(String(phValue(s.ph, c))) : s.lit)));
}

// matchBytes matches a Buffer against a pattern; a placeholder takes an
// optionally signed run of digits.
function matchBytes(segs, act, c) {
  let pos = 0;
  for (const s of segs) {
    if (!s.ph) {
      if (act.length - pos < s.lit.length || !act.subarray(pos, pos + s.lit.length).equals(s.lit)) return false;
      pos += s.lit.length;
      continue;
    }
    let j = pos;
    if (act[j] === 0x2d) j++;
    const digits = j;
    while (j < act.length && act[j] >= 0x30 && act[j] <= 0x39) j++;
    if (j === digits) return false;
    const n = Number(act.subarray(pos, j).toString('latin1'));
    if (!Number.isSafeInteger(n) || !phAccepts(s.ph, n, c)) return false;
    pos = j;
  }
  return pos === act.length;
}

function describe(segs, c) {
  return '"' + segs.map((s) => (s.ph ? `<${phDescribe(s.ph, c)}>` : escapeBytes(s.lit))).join('') + '"';
}

// escapeBytes renders bytes for a message: valid UTF-8 as JSON string
// content, other bytes as \xNN.
function escapeBytes(buf) {
  const s = buf.toString('utf8');
  if (Buffer.from(s, 'utf8').equals(buf)) return JSON.stringify(s).slice(1, -1);
  let out = '';
  for (const b of buf) {
    if (b >= 0x20 && b < 0x7f && b !== 0x22 && b !== 0x5c) out += String.fromCharCode(b);
    else out += '\\x' + b.toString(16).padStart(2, '0');
  }
  return out;
}

function show(v) {
  if (Buffer.isBuffer(v)) return '"' + escapeBytes(v) + '"';
  if (Array.isArray(v)) return '[' + v.map(show).join(', ') + ']';
  if (v === null || v === undefined) return 'nil';
  return JSON.stringify(v);
}

// args flattens a step's arguments (nested arrays are spliced in) to Buffers.
// With keyOf (command steps), "${key:<role>}" becomes keyOf(role).
function args(raw, c, keyOf) {
  const out = [];
  const add = (v) => {
    if (Array.isArray(v)) v.forEach(add);
    else {
      if (keyOf && typeof v === 'string') v = v.replace(/\$\{key:([a-z_]+)\}/g, (_, role) => keyOf(role));
      out.push(expand(pattern(v), c));
    }
  };
  raw.forEach(add);
  return out;
}

// ---- matching ----

// match compares an actual reply (number, Buffer, Array, null) with an
// expected JSON value and pushes mismatches onto out.
function match(where, exp, act, c, out) {
  const bad = (want) => out.push(`${where}: got ${show(act)}, want ${want}`);
  if (exp === null) {
    if (act !== null) bad('nil');
    return;
  }
  if (typeof exp === 'number') {
    if (!Number.isInteger(exp)) return out.push(`${where}: expected number ${exp} is not an integer`);
    if (act !== exp) bad(String(exp));
    return;
  }
  if (Array.isArray(exp)) {
    if (!Array.isArray(act) || act.length !== exp.length) return bad(`an array of ${exp.length}`);
    exp.forEach((e, i) => match(`${where}[${i}]`, e, act[i], c, out));
    return;
  }
  if (isObject(exp) && 'int' in exp && Object.keys(exp).length === 1) {
    const segs = pattern(exp.int);
    if (typeof act !== 'number' || !matchBytes(segs, Buffer.from(String(act)), c)) bad('integer ' + describe(segs, c));
    return;
  }
  const segs = pattern(exp);
  if (!Buffer.isBuffer(act) || !matchBytes(segs, act, c)) bad('string ' + describe(segs, c));
}

function matchKeyspace(where, exp, act, c, out) {
  for (const k of Object.keys(exp).sort()) {
    const e = exp[k];
    const a = act.get(k);
    const p = `${where} ${k}`;
    if (!a) {
      out.push(`${p}: missing (want a ${e.type})`);
      continue;
    }
    if (a.type !== e.type) {
      out.push(`${p}: type ${a.type}, want ${e.type}`);
      continue;
    }
    if (a.ttl !== e.ttl) out.push(`${p}: ttl ${a.ttl}, want ${e.ttl}`);
    matchKey(p, e, a, c, out);
  }
  for (const k of [...act.keys()].sort()) {
    if (!(k in exp)) out.push(`${where} ${k}: unexpected ${act.get(k).type} key`);
  }
}

// memberMap turns [member, value] pairs (or a hash object) into a Map keyed
// by the member's bytes (latin1 string).
function memberMap(pairs, c) {
  const m = new Map();
  for (const pair of pairs) {
    if (!Array.isArray(pair) || pair.length !== 2) throw new Error(`${JSON.stringify(pair)} is not a pair`);
    m.set(expand(pattern(pair[0]), c).toString('latin1'), pair[1]);
  }
  return m;
}

function matchMaps(p, what, want, got, valueMatch, out) {
  for (const k of [...want.keys()].sort()) {
    const label = `${p} ${what} ${show(Buffer.from(k, 'latin1'))}`;
    if (!got.has(k)) out.push(`${label}: missing`);
    else valueMatch(label, want.get(k), got.get(k));
  }
  for (const k of [...got.keys()].sort()) {
    if (!want.has(k)) out.push(`${p} ${what} ${show(Buffer.from(k, 'latin1'))}: unexpected, value ${show(got.get(k))}`);
  }
}

function matchKey(p, e, a, c, out) {
  try {
    switch (e.type) {
      case 'string':
        return match(p, e.value, a.value, c, out);
      case 'list':
        return match(p, e.value, a.value, c, out);
      case 'set': {
        const want = new Map(e.value.map((m) => [expand(pattern(m), c).toString('latin1'), true]));
        const got = new Map(a.value.map((m) => [m.toString('latin1'), true]));
        return matchMaps(p, 'member', want, got, () => {}, out);
      }
      case 'hash': {
        const pairs = Array.isArray(e.value) ? e.value : Object.entries(e.value);
        const want = memberMap(pairs, c);
        const got = new Map();
        for (let i = 0; i < a.value.length; i += 2) got.set(a.value[i].toString('latin1'), a.value[i + 1]);
        return matchMaps(p, 'field', want, got, (label, w, g) => match(label, w, g, c, out), out);
      }
      case 'zset': {
        const want = memberMap(e.value, c);
        const got = new Map();
        for (let i = 0; i < a.value.length; i += 2) got.set(a.value[i].toString('latin1'), Number(a.value[i + 1].toString()));
        return matchMaps(p, 'member', want, got, (label, w, g) => {
          if (!Number.isSafeInteger(g)) return out.push(`${label}: score ${g} is not an integer`);
          match(label, typeof w === 'string' ? { int: w } : w, g, c, out);
        }, out);
      }
      default:
        out.push(`${p}: unsupported type ${e.type}`);
    }
  } catch (err) {
    out.push(`${p}: ${err.message}`);
  }
}

// ---- the server ----

async function serverMS(redis) {
  const [s, us] = await redis.time();
  return Number(s) * 1000 + Math.floor(Number(us) / 1000);
}

// snapshot reads every luaq key of the run (queue prefix `prefix`) into a
// Map: vector key name -> {type, ttl, value}.
async function snapshot(redis, prefix) {
  const own = `luaq:{${prefix}`;
  const names = new Set();
  let cursor = '0';
  do {
    const [next, batch] = await redis.scan(cursor, 'MATCH', 'luaq:*', 'COUNT', 1000);
    cursor = next;
    for (const k of batch) if (k.startsWith(own)) names.add(k);
  } while (cursor !== '0');
  const snap = new Map();
  for (const k of [...names].sort()) {
    const type = await redis.type(k);
    let value;
    switch (type) {
      case 'none':
        continue;
      case 'string':
        value = await redis.callBuffer('GET', k);
        break;
      case 'list':
        value = await redis.callBuffer('LRANGE', k, 0, -1);
        break;
      case 'set':
        value = await redis.callBuffer('SMEMBERS', k);
        break;
      case 'hash': {
        // HGETALL's reply is turned into an object by ioredis, which would
        // lose binary field names: read keys and values separately.
        const fields = await redis.callBuffer('HKEYS', k);
        const values = fields.length ? await redis.callBuffer('HMGET', k, ...fields) : [];
        value = fields.flatMap((f, i) => [f, values[i]]);
        break;
      }
      case 'zset':
        value = await redis.callBuffer('ZRANGE', k, 0, -1, 'WITHSCORES');
        break;
      default:
        value = null;
    }
    const pttl = await redis.pttl(k);
    snap.set('luaq:{' + k.slice(own.length), { type, ttl: pttl > 0, value });
  }
  return snap;
}

function canonical(snap) {
  const conv = (v) => (Buffer.isBuffer(v) ? v.toString('hex') : Array.isArray(v) ? v.map(conv) : v);
  return JSON.stringify([...snap.entries()].map(([k, v]) => [k, v.type, v.ttl, conv(v.value)]));
}

async function clear(redis, prefix) {
  const snap = await snapshot(redis, prefix);
  for (const k of snap.keys()) await redis.del(`luaq:{${prefix}` + k.slice('luaq:{'.length));
}

function errorCode(err) {
  const msg = String(err && err.message);
  let [code, ...rest] = msg.split(' ');
  if (code === 'ERR' && rest.length && rest[0].startsWith('LQ_')) code = rest[0];
  return code.startsWith('LQ_') ? code : null;
}

// ---- running ----

async function runScenario(redis, manifest, vec, tol) {
  const prefix = `cfn${process.pid}.${crypto.randomBytes(4).toString('hex')}.`;
  const t = await serverMS(redis);
  const c = { t, day: Math.floor(t / DAY_MS), tol };
  const out = [];
  // No instant computed so far can lag the logical clock more than the
  // server's TIME now does: a slow step (a loaded machine) widens the
  // tolerance to that lag, never narrows it; tolerance 0 stays exact.
  let advanced = 0;
  const widen = async () => {
    if (tol > 0) c.tol = Math.max(c.tol, (await serverMS(redis)) - (t + advanced));
  };
  const snapshotWidened = async () => {
    const snap = await snapshot(redis, prefix);
    await widen();
    return snap;
  };
  try {
    for (let i = 0; i < vec.steps.length; i++) {
      const st = vec.steps[i];
      const where = `step ${i + 1} (${st.command ? 'command' : st.script}${st.note ? ': ' + st.note : ''})`;
      if (st.advance_ms) {
        await new Promise((r) => setTimeout(r, st.advance_ms));
        advanced += st.advance_ms;
      }
      const keyOf = (role) => manifest.key_pattern.replace('<queue>', prefix + st.queue).replace('<role>', role);
      if (st.command) {
        // A raw setup command; its reply is not compared.
        const [cmd, ...rest] = args(st.command, c, keyOf);
        try {
          await redis.callBuffer(cmd.toString(), ...rest);
        } catch (err) {
          out.push(`${where}: ${err.message}`);
        }
        if (st.keyspace !== undefined) matchKeyspace(`${where}: keyspace`, st.keyspace, await snapshotWidened(), c, out);
        continue;
      }
      const sc = manifest.scripts.get(st.script);
      if (!sc) throw new SetupError(`${vec.name}: ${where}: no script ${st.script} in the manifest`);
      const keys = sc.keys.map((k) => keyOf(k.role));
      const argv = args(st.args, c);
      const before = st.error !== undefined ? canonical(await snapshot(redis, prefix)) : null;
      let reply = null;
      let code = null;
      try {
        reply = await redis.callBuffer('EVALSHA', sc.sha1, keys.length, ...keys, ...argv);
      } catch (err) {
        code = errorCode(err);
        if (!code) {
          out.push(`${where}: raw error (not an LQ_ error reply): ${err.message}`);
          continue;
        }
      }
      await widen();
      if (st.error !== undefined) {
        if (code !== st.error) out.push(`${where}: got ${code ? 'error ' + code : 'reply ' + show(reply)}, want error ${st.error}`);
        if (canonical(await snapshot(redis, prefix)) !== before) out.push(`${where}: the error changed the keyspace`);
      } else if (code) {
        out.push(`${where}: got error ${code}, want a reply`);
      } else {
        match(`${where}: reply`, st.reply, reply, c, out);
      }
      if (st.keyspace !== undefined) matchKeyspace(`${where}: keyspace`, st.keyspace, await snapshotWidened(), c, out);
    }
    matchKeyspace('final keyspace', vec.keyspace, await snapshotWidened(), c, out);
    if (out.length && Math.floor((await serverMS(redis)) / DAY_MS) !== c.day) return { dayChanged: true, out };
    return { dayChanged: false, out };
  } finally {
    await clear(redis, prefix);
  }
}

function loadVectors(dir) {
  const files = fs.readdirSync(dir).filter((f) => f.endsWith('.json')).sort();
  if (!files.length) throw new SetupError(`no *.json vectors in ${dir}`);
  const only = (process.env.LUAQ_CONFORMANCE_ONLY || '').split(',').filter(Boolean);
  const vecs = [];
  for (const f of files) {
    const vec = JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8'));
    if (vec.format !== FORMAT) throw new SetupError(`${f}: format ${JSON.stringify(vec.format)}, want ${FORMAT}`);
    if (!Array.isArray(vec.steps) || !isObject(vec.keyspace)) throw new SetupError(`${f}: steps and keyspace are required`);
    for (const [i, st] of vec.steps.entries()) {
      if (typeof st.queue !== 'string' || !st.queue) throw new SetupError(`${f}: step ${i + 1}: queue is required`);
      if ((st.script === undefined) === (st.command === undefined)) throw new SetupError(`${f}: step ${i + 1}: exactly one of script and command is required`);
      if (st.command === undefined && (st.reply === undefined) === (st.error === undefined)) {
        throw new SetupError(`${f}: step ${i + 1}: exactly one of reply and error is required`);
      }
    }
    vec.file = f;
    if (!only.length || only.includes(vec.name)) vecs.push(vec);
  }
  return vecs;
}

async function loadBundle(redis, dir) {
  const raw = JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8'));
  if (!raw.key_pattern || !raw.key_pattern.includes('<queue>') || !raw.key_pattern.includes('<role>')) {
    throw new SetupError(`manifest key_pattern ${JSON.stringify(raw.key_pattern)} lacks <queue> or <role>`);
  }
  const scripts = new Map();
  for (const s of raw.scripts) {
    const src = fs.readFileSync(path.join(dir, s.file));
    const sha = await redis.script('LOAD', src);
    if (sha !== s.sha1) throw new SetupError(`SCRIPT LOAD ${s.file}: server computed ${sha}, manifest says ${s.sha1}`);
    scripts.set(s.name, s);
  }
  return { key_pattern: raw.key_pattern, version: raw.version, scripts };
}

function connect() {
  const url = process.env.LUAQ_REDIS_URL;
  const opts = { maxRetriesPerRequest: 1, enableOfflineQueue: true, lazyConnect: false };
  if (url) return new Redis(url, opts);
  const addr = env('LUAQ_REDIS_ADDR', true);
  const i = addr.lastIndexOf(':');
  return new Redis({ host: addr.slice(0, i), port: Number(addr.slice(i + 1)), ...opts });
}

async function main() {
  const bundleDir = env('LUAQ_BUNDLE_DIR', true);
  const vectorsDir = env('LUAQ_VECTORS_DIR', true);
  const tolRaw = process.env.LUAQ_CONFORMANCE_TOLERANCE_MS;
  const tol = tolRaw ? Number(tolRaw) : 2000;
  if (!Number.isInteger(tol) || tol < 0) throw new SetupError('LUAQ_CONFORMANCE_TOLERANCE_MS must be a non-negative integer');
  const vecs = loadVectors(vectorsDir);
  const redis = connect();
  const started = Date.now();
  let failed = 0;
  let steps = 0;
  try {
    const manifest = await loadBundle(redis, bundleDir);
    console.log(`luaq conformance: bundle ${manifest.version} (${manifest.scripts.size} scripts), ${vecs.length} vectors, tolerance ${tol} ms`);
    for (const vec of vecs) {
      const t0 = Date.now();
      let res = await runScenario(redis, manifest, vec, tol);
      if (res.dayChanged) {
        console.log(`  ${vec.name}: the UTC day changed during the run; running it again`);
        res = await runScenario(redis, manifest, vec, tol);
      }
      steps += vec.steps.length;
      const ms = Date.now() - t0;
      if (res.out.length) {
        failed++;
        console.log(`FAIL ${vec.name} (${vec.file}, ${vec.steps.length} steps, ${ms} ms): ${res.out.length} mismatch(es)`);
        for (const m of res.out) console.log(`     ${m}`);
      } else {
        console.log(`ok   ${vec.name} (${vec.steps.length} steps, ${ms} ms)`);
      }
    }
  } finally {
    redis.disconnect();
  }
  console.log(`luaq conformance: ${vecs.length - failed}/${vecs.length} vectors passed, ${steps} steps, ${Date.now() - started} ms`);
  return failed ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(`luaq conformance: ${err instanceof SetupError ? '' : 'internal error: '}${err.stack || err}`);
    process.exit(2);
  },
);
