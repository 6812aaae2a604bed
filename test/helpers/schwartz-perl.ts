/**
 * TheSchwartz tests' helpers: a queue per test (a fresh table prefix in the engine's throw-away database), the Perl
 * DBI DSN of a test database, and the real TheSchwartz 1.12 (Debian's `libtheschwartz-perl`) driven through one
 * inline Perl script: insert jobs, work them with worker classes that record what they saw, look handles up.
 *
 * @module
 */

import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { SchwartzClient, type SchwartzClientOptions } from '../../src/schwartz/index.ts';
import { openDatabase, type SqlDatabase } from '../../src/sql/index.ts';
import type { TestDatabase } from './sql-databases.ts';

const run = promisify(execFile);

/** A DBI DSN plus credentials, as both TheSchwartz and our client take them. */
export interface DbiDatabase {
  dsn: string;
  user?: string;
  password?: string;
}

/**
 * The Perl DBI DSN of a test database: `dbi:SQLite:dbname=FILE`, `dbi:mysql:database=NAME;host=H;port=P`,
 * `dbi:Pg:dbname=NAME;host=H;port=P`, with the URL's user and password.
 */
export function dbiDatabase(td: TestDatabase): DbiDatabase {
  if (td.dialect === 'sqlite') return { dsn: `dbi:SQLite:dbname=${td.name}` };
  const url = new URL(td.location);
  const user = decodeURIComponent(url.username);
  const password = decodeURIComponent(url.password);
  const host = url.hostname;
  const dsn =
    td.dialect === 'mysql'
      ? `dbi:mysql:database=${td.name};host=${host};port=${url.port || 3306}`
      : `dbi:Pg:dbname=${td.name};host=${host};port=${url.port || 5432}`;
  return { dsn, ...(user !== '' && { user }), ...(password !== '' && { password }) };
}

let prefixes = 0;

/** A table prefix no other test of this process uses. */
export function freshPrefix(): string {
  return `t${process.pid % 10_000}_${++prefixes}_`;
}

/** One test's queue: a client on fresh tables, and a plain connection to look at the rows. */
export interface TestQueue {
  client: SchwartzClient;
  prefix: string;
  /** A second connection to the same database, for assertions and for faking other processes. */
  raw: SqlDatabase;
  /** `<prefix><table>`. */
  table(name: 'job' | 'funcmap' | 'error' | 'exitstatus' | 'note'): string;
  close(): Promise<void>;
}

/**
 * Creates TheSchwartz's tables under a fresh prefix in `td` and a client on them (configured by the database's URL,
 * or by `database` when given, e.g. its DBI DSN).
 */
export async function newQueue(
  td: TestDatabase,
  options: Partial<SchwartzClientOptions> & { database?: DbiDatabase; prefix?: string } = {},
): Promise<TestQueue> {
  const prefix = options.prefix ?? freshPrefix();
  const { database, ...clientOptions } = options;
  const client = new SchwartzClient({
    databases: [{ ...(database ?? { dsn: td.location }), prefix }],
    connections: 4,
    ...clientOptions,
  });
  await client.ensureSchema();
  const raw = await openDatabase(td.location, { connections: 2 });
  return {
    client,
    prefix,
    raw,
    table: (name) => `${prefix}${name}`,
    close: async () => {
      await client.close();
      await raw.close();
    },
  };
}

/** A job argument for the Perl side: bytes as hex, or a structure Perl stores with `Storable::nfreeze`. */
export type PerlArg = { hex: string } | { ref: unknown };

/** A job for TheSchwartz::Job->new. */
export interface PerlJob {
  funcname: string;
  arg?: PerlArg;
  uniqkey?: string;
  run_after?: number;
  priority?: number;
  coalesce?: string;
}

/** What the Perl script is asked to do. */
export type PerlCommand =
  | { op: 'insert'; jobs: PerlJob[] }
  | { op: 'work'; can_do: string[]; max?: number }
  | { op: 'lookup'; handles: string[] }
  | { op: 'hash' };

/** One line of the Perl script's output. */
export type PerlRecord = Record<string, unknown>;

/** Where the Perl client's databases are and how it is configured. */
export interface PerlClientConfig {
  databases: (DbiDatabase & { prefix?: string })[];
  prioritize?: boolean;
  floor?: number;
  batch_size?: number;
}

/**
 * The Perl side. Worker classes (each prints one JSON line per job it works, in the order worked):
 * - `Perl::Complete` completes;
 * - `Perl::Echo` records its argument: `thawed` (JSON) and `refrozen_hex` (nfreeze of it) when Storable thawed it,
 *   else `arg_hex`; then completes;
 * - `Perl::Fail` fails with "perl failure N" (max_retries 2, retry_delay 0);
 * - `Perl::Backoff` fails with "perl backoff" (max_retries 1, retry_delay 100 s per failure);
 * - `Perl::Perm` fails permanently with exit status 9;
 * - `Perl::Replace` replaces itself with two `Node::Child` jobs, args "child-1" and "child-2";
 * - `Perl::Die` dies with "perl died";
 * - `Perl::Noop` returns without an outcome (TheSchwartz fails it).
 * All keep exit statuses for an hour.
 */
const PERL_SCRIPT = String.raw`
use strict; use warnings;
use TheSchwartz; use TheSchwartz::Job; use JSON::PP; use Storable ();
$| = 1;
my $json = JSON::PP->new->canonical->allow_nonref->allow_blessed;
sub out { print $json->encode($_[0]), "\n" }
sub hexof { defined $_[0] ? unpack('H*', $_[0]) : undef }
sub record {
  my ($class, $job, %more) = @_;
  out({ class => $class, handle => $job->handle->as_string, jobid => 0 + $job->jobid,
        priority => $job->priority, uniqkey => $job->uniqkey, coalesce => $job->coalesce,
        failures => 0 + $job->failures, %more });
}
package Perl::Base; use base 'TheSchwartz::Worker';
sub keep_exit_status_for { 3600 }
package Perl::Complete; use base 'Perl::Base';
sub work { my ($c, $job) = @_; main::record($c, $job, arg_hex => main::hexof($job->arg)); $job->completed }
package Perl::Echo; use base 'Perl::Base';
sub work {
  my ($c, $job) = @_; my $arg = $job->arg;
  if (ref $arg) { main::record($c, $job, thawed => $arg, refrozen_hex => main::hexof(Storable::nfreeze($arg))) }
  else { main::record($c, $job, arg_hex => main::hexof($arg)) }
  $job->completed;
}
package Perl::Fail; use base 'Perl::Base';
sub max_retries { 2 } sub retry_delay { 0 }
sub work { my ($c, $job) = @_; main::record($c, $job); $job->failed('perl failure ' . ($job->failures + 1)) }
package Perl::Backoff; use base 'Perl::Base';
sub max_retries { 1 } sub retry_delay { my ($c, $n) = @_; 100 * $n }
sub work { my ($c, $job) = @_; main::record($c, $job); $job->failed('perl backoff') }
package Perl::Perm; use base 'Perl::Base';
sub work { my ($c, $job) = @_; main::record($c, $job); $job->permanent_failure('perl permanent', 9) }
package Perl::Replace; use base 'Perl::Base';
sub work {
  my ($c, $job) = @_; main::record($c, $job);
  $job->replace_with(map { TheSchwartz::Job->new(funcname => 'Node::Child', arg => "child-$_") } 1 .. 2);
}
package Perl::Die; use base 'Perl::Base';
sub work { my ($c, $job) = @_; main::record($c, $job); die "perl died\n" }
package Perl::Noop; use base 'Perl::Base';
sub work { my ($c, $job) = @_; main::record($c, $job); return }
package main;
my $cfg = $json->decode($ARGV[0]);
my $cmds = $json->decode($ARGV[1]);
my $client = TheSchwartz->new(
  databases => [ map { my $d = $_; +{ dsn => $d->{dsn}, user => $d->{user}, pass => $d->{password},
                                      (defined $d->{prefix} ? (prefix => $d->{prefix}) : ()) } } @{ $cfg->{databases} } ],
  ($cfg->{prioritize} ? (prioritize => 1) : ()),
  ($cfg->{floor} ? (floor => $cfg->{floor}) : ()),
  ($cfg->{batch_size} ? (batch_size => $cfg->{batch_size}) : ()),
);
sub perl_arg {
  my ($a) = @_;
  return undef unless defined $a;
  return pack('H*', $a->{hex}) if exists $a->{hex};
  return $a->{ref};
}
for my $cmd (@$cmds) {
if ($cmd->{op} eq 'insert') {
  for my $j (@{ $cmd->{jobs} }) {
    my %f = (funcname => $j->{funcname});
    $f{arg} = perl_arg($j->{arg}) if defined $j->{arg};
    for my $k (qw(uniqkey run_after priority coalesce)) { $f{$k} = $j->{$k} if defined $j->{$k} }
    my $h = $client->insert(TheSchwartz::Job->new(%f));
    out({ handle => $h ? $h->as_string : undef });
  }
} elsif ($cmd->{op} eq 'work') {
  $client->can_do($_) for @{ $cmd->{can_do} };
  if (defined $cmd->{max}) { for (1 .. $cmd->{max}) { $client->work_once or last } }
  else { $client->work_until_done }
} elsif ($cmd->{op} eq 'lookup') {
  for my $s (@{ $cmd->{handles} }) {
    my $h = $client->handle_from_string($s);
    my $job = $client->lookup_job($s);
    my @log = $h->failure_log;
    out({ handle => $s, pending => 0 + $h->is_pending, exit_status => scalar($h->exit_status),
          failure_log => [ sort @log ], failures => 0 + $h->failures,
          funcname => $job ? $job->funcname : undef,
          arg_hex => $job && !ref($job->arg) ? hexof($job->arg) : undef });
  }
} elsif ($cmd->{op} eq 'hash') {
  out([ sort keys %{ $client->{databases} } ]);
}
out({ end_of_op => $cmd->{op} });
}
`;

/**
 * Runs commands, in order, in one Perl process (one client) against the real TheSchwartz and returns each
 * command's JSON lines.
 */
export async function runPerlSchwartz(config: PerlClientConfig, commands: PerlCommand[]): Promise<PerlRecord[][]> {
  try {
    const { stdout } = await run('perl', ['-e', PERL_SCRIPT, JSON.stringify(config), JSON.stringify(commands)], {
      timeout: 30_000,
      maxBuffer: 16 * 1024 * 1024,
    });
    const out: PerlRecord[][] = [[]];
    for (const line of stdout.split('\n')) {
      if (line === '') continue;
      const record = JSON.parse(line) as PerlRecord;
      if (record.end_of_op !== undefined) out.push([]);
      else (out[out.length - 1] as PerlRecord[]).push(record);
    }
    out.pop();
    return out;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`perl TheSchwartz failed: ${e.stderr || e.message}`, { cause: err });
  }
}
