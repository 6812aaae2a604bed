#!/usr/bin/perl
# Benchmark child for bench/schwartz.ts: the real TheSchwartz 1.12 (Debian's libtheschwartz-perl) in one process,
# the Perl twin of bench/lib/schwartz-node.ts, speaking the same line protocol (bench/lib/schwartz-common.ts):
#
#   perl bench/lib/schwartz-bench.pl '<ChildConfig as JSON>'
#   -> {"type":"ready"}              connected, funcmap loaded (insert: one warm-up job inserted)
#   <- go                            (a line on stdin)
#   -> {"type":"done","count":N,"ms":…,"cpuMs":…}
#   -> {"type":"error","message":…}  and exit 1
#
# Modes: insert (TheSchwartz->insert one job at a time), insert-batch (insert_jobs, `batch` jobs per call), work
# (can_do Bench::Job; work_until_done; the job only calls $job->completed).
use strict;
use warnings;
use JSON::PP ();
use Time::HiRes ();
use TheSchwartz;
use TheSchwartz::Job;

$| = 1;
my $json = JSON::PP->new->canonical;
sub out { print $json->encode($_[0]), "\n" }

my $worked = 0;

package Bench::Job;
use base 'TheSchwartz::Worker';
# TheSchwartz::Worker's defaults otherwise: max_retries 0, grab_for 3600, keep_exit_status_for 0 (as our worker's).
sub work { my ($class, $job) = @_; $job->completed; $worked++ }

package main;

my $cfg = $json->decode($ARGV[0] // die "usage: schwartz-bench.pl CONFIG-JSON\n");
local $SIG{ALRM} = sub { out({ type => 'error', message => "deadline of $cfg->{deadlineMs} ms passed" }); exit 1 };
alarm(int(($cfg->{deadlineMs} // 600_000) / 1000) + 1);

my $ok = eval {
  my $client = TheSchwartz->new(
    databases => [ { dsn => $cfg->{dsn}, user => $cfg->{user}, pass => $cfg->{password}, prefix => $cfg->{prefix} } ],
    # 0 (TheSchwartz's default): every driver_for() makes a new Data::ObjectDriver driver, i.e. a new connection for
    # each search, grab, outcome and insert. A positive value keeps the driver (and its connection) for that long.
    ($cfg->{driverCache} ? (driver_cache_expiration => $cfg->{driverCache}) : ()),
  );
  my $funcname = $cfg->{funcname};
  my $arg = sub { my $s = "job-$_[0]-"; $s . ('x' x ($cfg->{payload} - length $s)) };

  if ($cfg->{mode} eq 'work') {
    $client->can_do($funcname);
    # Connects and loads the funcmap (list_jobs resolves the funcname), as the Node side's warm-up does.
    $client->list_jobs({ funcname => $funcname, limit => 1 });
  } else {
    $client->insert(TheSchwartz::Job->new(funcname => $funcname, arg => $arg->('warm')))
      or die "warm-up insert failed\n";
  }
  out({ type => 'ready' });
  my $go = <STDIN>;
  die "parent went away\n" unless defined $go;

  my @cpu0 = times;
  my $t0 = Time::HiRes::time();
  my $count = 0;
  if ($cfg->{mode} eq 'insert') {
    for my $i (1 .. $cfg->{jobs}) {
      $client->insert($funcname, $arg->($i)) or die "insert $i failed\n";
      $count++;
    }
  } elsif ($cfg->{mode} eq 'insert-batch') {
    my $i = 0;
    while ($i < $cfg->{jobs}) {
      my $n = $cfg->{jobs} - $i < $cfg->{batch} ? $cfg->{jobs} - $i : $cfg->{batch};
      my @jobs = map { TheSchwartz::Job->new(funcname => $funcname, arg => $arg->($i + $_)) } 1 .. $n;
      my $done = $client->insert_jobs(@jobs);
      die "insert_jobs of $n jobs inserted $done\n" unless $done == $n;
      $i += $n;
      $count += $n;
    }
  } elsif ($cfg->{mode} eq 'work') {
    $client->work_until_done;
    $count = $worked;
  } else {
    die "unknown mode $cfg->{mode}\n";
  }
  my $ms = (Time::HiRes::time() - $t0) * 1000;
  my @cpu1 = times;
  out({ type => 'done', count => $count, ms => $ms, cpuMs => (($cpu1[0] + $cpu1[1]) - ($cpu0[0] + $cpu0[1])) * 1000 });
  1;
};
unless ($ok) {
  my $err = $@ || 'unknown error';
  $err =~ s/\s+$//;
  out({ type => 'error', message => $err });
  exit 1;
}
exit 0;
