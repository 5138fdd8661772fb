// Shared by the interop scripts that tools/node/interop_test.go runs: the
// connection and the client, both from the environment.
//
//   LUAQ_REDIS_ADDR  host:port of the Redis server
//   LUAQ_BUNDLE_DIR  an exported bundle (manifest.json + <name>.lua)

import Redis from 'ioredis';
import { Luaq } from '../luaq.js';

export async function open() {
  const addr = process.env.LUAQ_REDIS_ADDR;
  const bundleDir = process.env.LUAQ_BUNDLE_DIR;
  if (!addr || !bundleDir) {
    throw new Error('set LUAQ_REDIS_ADDR (host:port) and LUAQ_BUNDLE_DIR (an exported bundle)');
  }
  const i = addr.lastIndexOf(':');
  const redis = new Redis({ host: addr.slice(0, i), port: Number(addr.slice(i + 1)), maxRetriesPerRequest: 2 });
  const lq = new Luaq(redis, bundleDir);
  await lq.load();
  return { redis, lq };
}

// main runs fn, prints its value as one line of JSON on stdout and exits
// (at once: ioredis' parser keeps a timer alive for a while after large replies).
export function main(fn) {
  fn().then(
    (report) => {
      process.stdout.write(`${JSON.stringify(report)}\n`, () => process.exit(0));
    },
    (err) => {
      console.error(err && err.stack ? err.stack : err);
      process.exit(1);
    },
  );
}
