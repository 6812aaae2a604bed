#!/usr/bin/env -S node --max-semi-space-size=1
/**
 * `sharenothing <command>`: the one CLI of the stack. Thin: it parses flags into the options the library takes.
 *
 * @module
 */

import { setFlagsFromString } from 'node:v8';
import { runGearmand } from './gearmand.ts';
import { runMemcached } from './memcached.ts';
import { runSchwartz } from './schwartz.ts';
import { runUp } from './up.ts';

const USAGE = `usage: sharenothing <command> [options]

commands:
  up          start the local stack (two cache nodes and a job server for now) on loopback
  memcached   a memcached 1.6-compatible cache server (memcached's flags: -p -l -m -c -t -I -f -n -M -C -v …)
  gearmand    a gearmand 1.1-compatible job server (gearmand's flags: -p -L -j -w -R -q --exceptions …)
  schwartz    operate a TheSchwartz queue (schema, insert, list, inspect, retry, stats) and run workers
`;

// The daemons keep their data outside the JS heap (slab arenas, socket buffers) and allocate little per request, so
// a 1 MiB young generation is enough; V8's default (16 MiB semi-spaces, grown per thread) costs ~30 MB of RSS for
// nothing. Measured: RSS with 1M cached items 328 → 298 MiB, throughput unchanged (docs/benchmarks.md).
setFlagsFromString('--max-semi-space-size=1');

const [command, ...args] = process.argv.slice(2);
let code: number | undefined;
switch (command) {
  case 'memcached':
    code = await runMemcached(args);
    break;
  case 'gearmand':
    code = await runGearmand(args);
    break;
  case 'up':
    code = await runUp(args);
    break;
  case 'schwartz':
    code = await runSchwartz(args);
    break;
  case undefined:
  case '-h':
  case '--help':
  case 'help':
    process.stdout.write(USAGE);
    code = command === undefined ? 64 : 0;
    break;
  default:
    process.stderr.write(`sharenothing: unknown command '${command}'\n${USAGE}`);
    code = 64;
}
if (code !== undefined) process.exitCode = code;
