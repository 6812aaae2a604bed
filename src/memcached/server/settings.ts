/**
 * Server settings and memcached's command-line flags.
 *
 * @module
 */

/** Everything a memcached server can be told; defaults are memcached 1.6's. */
export interface MemcachedSettings {
  /** `-p` TCP port (default 11211; 0 picks a free one). */
  port: number;
  /** `-l` addresses to listen on (default: all interfaces). */
  listen: string[];
  /** `-U` UDP port (0 = off, memcached's default since 1.5.6). Only 0 is supported. */
  udpPort: number;
  /** `-m` cache memory in bytes (default 64 MiB). */
  maxBytes: number;
  /** `-c` maximum simultaneous connections (default 1024). */
  maxConns: number;
  /** `-t` serving threads (default 4). */
  threads: number;
  /** `-I` maximum item size in bytes (default 1 MiB). */
  itemSizeMax: number;
  /** `-f` slab growth factor (default 1.25). */
  growthFactor: number;
  /** `-n` minimum space for key + value + flags (default 48). */
  chunkSize: number;
  /** `-o slab_chunk_max` in bytes (default half a page). */
  slabChunkMax: number;
  /** false with `-M`. */
  evictions: boolean;
  /** false with `-C`. */
  useCas: boolean;
  /** `-v` count (0–2). */
  verbose: number;
  /** `-R` requests served per event before yielding to other connections (default 20). */
  reqsPerEvent: number;
  /** `-b` listen backlog (default 1024). */
  backlog: number;
  /** `-B` protocol: auto (first byte decides), ascii or binary. */
  bindingProtocol: 'auto' | 'ascii' | 'binary';
  /** `-S` SASL authentication required (binary protocol). */
  sasl: boolean;
  /** `-u`: when started as root, switch to this user once the ports are bound (as memcached does). */
  user: string | undefined;
  /** Password file for SASL PLAIN (`MEMCACHED_SASL_PWDB` or `-o sasl_pwdb=<file>`): lines `user:password`. */
  saslPasswordFile: string | undefined;
  /** false with `-F` (`flush_all` refused). */
  flushEnabled: boolean;
  /** `-A` allow the `shutdown` command. */
  shutdownEnabled: boolean;
  /** `-o track_sizes`. */
  trackSizes: boolean;
  /** `-o idle_timeout` seconds (0 = off). */
  idleTimeout: number;
  /** `-X` disables `stats cachedump` and `lru_crawler metadump`. */
  dumpEnabled: boolean;
  /** Opt-in admin listener (`--admin host:port`) for /metrics and /healthz; not a memcached flag. */
  admin: { host: string; port: number } | undefined;
}

/** Slab page size: memcached's `slab_page_size`. */
export const SLAB_PAGE_SIZE = 1024 * 1024;

/** Returns memcached's defaults. */
export function defaultSettings(): MemcachedSettings {
  return {
    port: 11211,
    listen: [],
    udpPort: 0,
    maxBytes: 64 * 1024 * 1024,
    maxConns: 1024,
    threads: 4,
    itemSizeMax: 1024 * 1024,
    growthFactor: 1.25,
    chunkSize: 48,
    slabChunkMax: SLAB_PAGE_SIZE / 2,
    evictions: true,
    useCas: true,
    verbose: 0,
    reqsPerEvent: 20,
    backlog: 1024,
    bindingProtocol: 'auto',
    sasl: false,
    user: undefined,
    saslPasswordFile: process.env.MEMCACHED_SASL_PWDB,
    flushEnabled: true,
    shutdownEnabled: false,
    trackSizes: false,
    idleTimeout: 0,
    dumpEnabled: true,
    admin: undefined,
  };
}

/** A bad flag or value: the CLI prints the message and exits 64 (EX_USAGE), as memcached exits non-zero. */
export class SettingsError extends Error {
  readonly code = 'MEMCACHED_ERR_BAD_FLAG';
}

/** Parses memcached's size syntax: a number of bytes with an optional k/m/g suffix (`-I 2m`). */
export function parseSize(value: string, flag: string): number {
  const m = /^(\d+)([kKmMgG]?)$/.exec(value);
  if (!m) throw new SettingsError(`${flag}: invalid size '${value}'`);
  const mult = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g'];
  return Number(m[1]) * mult;
}

function parseIntFlag(value: string | undefined, flag: string, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined || !/^-?\d+$/.test(value)) throw new SettingsError(`${flag} requires a number`);
  const n = Number(value);
  if (n < min || n > max) throw new SettingsError(`${flag}: ${value} is out of range (${min}..${max})`);
  return n;
}

const LONG_FLAGS: Record<string, string> = {
  '--port': '-p',
  '--listen': '-l',
  '--udp-port': '-U',
  '--memory-limit': '-m',
  '--conn-limit': '-c',
  '--threads': '-t',
  '--max-item-size': '-I',
  '--slab-growth-factor': '-f',
  '--slab-min-size': '-n',
  '--disable-evictions': '-M',
  '--disable-cas': '-C',
  '--verbose': '-v',
  '--max-reqs-per-event': '-R',
  '--listen-backlog': '-b',
  '--protocol': '-B',
  '--enable-sasl': '-S',
  '--disable-flush-all': '-F',
  '--enable-shutdown': '-A',
  '--disable-dumping': '-X',
  '--extended': '-o',
  '--user': '-u',
  '--daemon': '-d',
  '--help': '-h',
  '--version': '-V',
};

/** Flags memcached has that make no sense here; refused with this reason rather than silently ignored. */
const UNSUPPORTED: Record<string, string> = {
  '-s': 'UNIX domain sockets are not supported; listen on TCP with -l/-p',
  '-a': 'UNIX socket permissions (-a) are not supported',
  '-k': 'locking memory (-k) is not supported',
  '-P': 'pid files (-P) are not supported; run under a supervisor',
  '-L': 'large memory pages (-L) are not supported',
  '-D': 'stats prefix delimiters (-D) are not supported',
  '-r': 'raising the core file limit (-r) is not supported',
  '-e': 'memory files (-e) are not supported',
  '-Y': 'ASCII authentication (-Y) is not supported; use -S with the binary protocol',
  '-Z': 'TLS (-Z) is not supported by the server yet',
  '-N': 'NAPI ids (-N) are not supported',
};

/** The `-o` extended options understood here. */
function applyExtended(s: MemcachedSettings, list: string): void {
  for (const item of list.split(',')) {
    if (item === '') continue;
    const eq = item.indexOf('=');
    const name = eq < 0 ? item : item.slice(0, eq);
    const value = eq < 0 ? undefined : item.slice(eq + 1);
    switch (name) {
      case 'slab_chunk_max':
        // memcached takes this one in kilobytes unless a suffix is given.
        s.slabChunkMax =
          value !== undefined && /^\d+$/.test(value)
            ? Number(value) * 1024
            : parseSize(value ?? '', '-o slab_chunk_max');
        break;
      case 'track_sizes':
        s.trackSizes = true;
        break;
      case 'idle_timeout':
        s.idleTimeout = parseIntFlag(value, '-o idle_timeout', 0);
        break;
      case 'sasl_pwdb':
        if (!value) throw new SettingsError('-o sasl_pwdb requires a file name');
        s.saslPasswordFile = value;
        break;
      // Tuning knobs of memcached's own LRU maintainer / crawler / hash table; ours needs none of them, and
      // accepting them keeps existing command lines working (the behaviour they tune is the default here).
      case 'modern':
      case 'no_modern':
      case 'lru_crawler':
      case 'no_lru_crawler':
      case 'lru_maintainer':
      case 'no_lru_maintainer':
      case 'slab_reassign':
      case 'no_slab_reassign':
      case 'slab_automove':
      case 'hash_algorithm':
      case 'hashpower':
      case 'maxconns_fast':
      case 'no_maxconns_fast':
      case 'temporary_ttl':
      case 'hot_lru_pct':
      case 'warm_lru_pct':
      case 'hot_max_factor':
      case 'warm_max_factor':
      case 'lru_crawler_sleep':
      case 'lru_crawler_tocrawl':
      case 'tail_repair_time':
      case 'watcher_logbuf_size':
      case 'worker_logbuf_size':
      case 'inline_ascii_response':
      case 'no_inline_ascii_response':
        break;
      default:
        throw new SettingsError(`-o ${name}: extended option not supported`);
    }
  }
}

/**
 * Parses memcached's command line (`-p 11211 -m 64 -c 1024 -t 4 -o track_sizes …`, also `-p11211` and long forms).
 * Unknown or unsupported flags throw a {@link SettingsError} with a clear message.
 */
export function parseMemcachedArgs(argv: readonly string[]): MemcachedSettings {
  const s = defaultSettings();
  const args = [...argv];
  let protocolSpecified = false;
  for (let i = 0; i < args.length; i++) {
    let arg = args[i]!;
    let inline: string | undefined;
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      if (eq > 0) {
        inline = arg.slice(eq + 1);
        arg = arg.slice(0, eq);
      }
      if (arg === '--admin') {
        const v = inline ?? args[++i];
        const m = v ? /^(.*):(\d+)$/.exec(v) : null;
        if (!m) throw new SettingsError('--admin requires host:port');
        s.admin = { host: m[1] || '127.0.0.1', port: Number(m[2]) };
        continue;
      }
      const short = LONG_FLAGS[arg];
      if (!short) throw new SettingsError(`unknown option ${arg}`);
      arg = short;
    } else if (/^-[a-zA-Z]./.test(arg) && !/^-v+$/.test(arg)) {
      inline = arg.slice(2);
      arg = arg.slice(0, 2);
    }
    const value = (): string => {
      const v = inline ?? args[++i];
      if (v === undefined) throw new SettingsError(`${arg} requires an argument`);
      return v;
    };
    if (UNSUPPORTED[arg]) throw new SettingsError(UNSUPPORTED[arg]);
    switch (arg) {
      case '-p':
        s.port = parseIntFlag(value(), '-p', 0, 65535);
        break;
      case '-U':
        s.udpPort = parseIntFlag(value(), '-U', 0, 65535);
        if (s.udpPort !== 0)
          throw new SettingsError('UDP (-U) is not supported; memcached disables it by default, use -U 0');
        break;
      case '-l':
        for (const a of value().split(',')) {
          const host = a.replace(/^\[(.*)\](:\d+)?$/, '$1');
          if (host) s.listen.push(host);
        }
        break;
      case '-m': {
        const v = value();
        // memcached: plain numbers are megabytes; k/m/g suffixes are also accepted.
        s.maxBytes = /^\d+$/.test(v) ? Number(v) * 1024 * 1024 : parseSize(v, '-m');
        break;
      }
      case '-c':
        s.maxConns = parseIntFlag(value(), '-c', 1);
        break;
      case '-t':
        s.threads = parseIntFlag(value(), '-t', 1, 256);
        break;
      case '-I':
        s.itemSizeMax = parseSize(value(), '-I');
        break;
      case '-f': {
        const v = value();
        s.growthFactor = Number(v);
        if (!(s.growthFactor > 1)) throw new SettingsError('Factor must be greater than 1');
        break;
      }
      case '-n':
        s.chunkSize = parseIntFlag(value(), '-n', 1);
        break;
      case '-M':
        s.evictions = false;
        break;
      case '-C':
        s.useCas = false;
        break;
      case '-v':
      case '-vv':
      case '-vvv':
        s.verbose = Math.min(2, s.verbose + arg.length - 1);
        break;
      case '-R':
        s.reqsPerEvent = parseIntFlag(value(), '-R', 1);
        break;
      case '-b':
        s.backlog = parseIntFlag(value(), '-b', 1);
        break;
      case '-B': {
        const v = value();
        if (v !== 'auto' && v !== 'ascii' && v !== 'binary') {
          throw new SettingsError(
            `Invalid value for binding protocol: ${v}\n -- should be one of auto, binary, or ascii`,
          );
        }
        s.bindingProtocol = v;
        protocolSpecified = true;
        break;
      }
      case '-S':
        s.sasl = true;
        break;
      case '-F':
        s.flushEnabled = false;
        break;
      case '-A':
        s.shutdownEnabled = true;
        break;
      case '-X':
        s.dumpEnabled = false;
        break;
      case '-o':
        applyExtended(s, value());
        break;
      case '-u':
        s.user = value();
        break;
      case '-d':
        throw new SettingsError('daemon mode (-d) is not supported; run under a supervisor (systemd, runit)');
      default:
        throw new SettingsError(`unknown option ${arg}`);
    }
  }
  if (s.sasl && protocolSpecified && s.bindingProtocol !== 'binary') {
    throw new SettingsError('You cannot allow the ASCII protocol while using SASL.');
  }
  validateSettings(s);
  return s;
}

/** memcached's start-up checks on the size flags, and SASL implying the binary protocol. */
export function validateSettings(s: MemcachedSettings): void {
  // memcached: SASL is binary-only, so -S makes the whole server binary; an explicit ASCII protocol is an error.
  if (s.sasl && s.bindingProtocol === 'auto') s.bindingProtocol = 'binary';
  if (s.sasl && s.bindingProtocol === 'ascii') {
    throw new SettingsError('You cannot allow the ASCII protocol while using SASL.');
  }
  if (s.itemSizeMax < 1024) throw new SettingsError('Item max size cannot be less than 1024 bytes.');
  if (s.itemSizeMax > s.maxBytes / 2) {
    throw new SettingsError('Cannot set item size limit higher than 1/2 of memory max.');
  }
  if (s.itemSizeMax > 1024 * 1024 * 1024) throw new SettingsError('Cannot set item size limit higher than a gigabyte.');
  if (s.slabChunkMax > SLAB_PAGE_SIZE / 2) {
    throw new SettingsError('slab_chunk_max cannot be larger than half a slab page');
  }
  if (s.slabChunkMax < 1024 * 16 && s.slabChunkMax < s.itemSizeMax) {
    // memcached's rule: a chunk max below 16k requires items to fit in one chunk.
    throw new SettingsError('slab_chunk_max must be at least 16k unless it is at least the item size limit');
  }
}
