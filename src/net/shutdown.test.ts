import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { installShutdownHandlers } from './shutdown.ts';

/** Resolves with the first exit code the handlers ask for. */
function exitRecorder(): { exit: (code: number) => void; codes: number[]; exited: Promise<number> } {
  const codes: number[] = [];
  let resolve!: (code: number) => void;
  const exited = new Promise<number>((r) => {
    resolve = r;
  });
  return {
    codes,
    exited,
    exit: (code) => {
      codes.push(code);
      resolve(code);
    },
  };
}

describe('shutdown handlers', () => {
  it('closes on the first SIGTERM, passing the deadline, then exits 0', async () => {
    const rec = exitRecorder();
    const deadlines: number[] = [];
    const uninstall = installShutdownHandlers({
      close: async (deadlineMs) => {
        deadlines.push(deadlineMs);
      },
      deadlineMs: 1234,
      exit: rec.exit,
    });
    try {
      process.emit('SIGTERM', 'SIGTERM');
      assert.equal(await rec.exited, 0);
      assert.deepEqual(deadlines, [1234]);
    } finally {
      uninstall();
    }
  });

  it('exits 1 when close rejects', async () => {
    const rec = exitRecorder();
    const uninstall = installShutdownHandlers({
      close: () => Promise.reject(new Error('flush failed')),
      exit: rec.exit,
    });
    try {
      process.emit('SIGINT', 'SIGINT');
      assert.equal(await rec.exited, 1);
    } finally {
      uninstall();
    }
  });

  it('exits 1 when the deadline passes before close settles, and only once', async () => {
    const rec = exitRecorder();
    let finishClose!: () => void;
    const uninstall = installShutdownHandlers({
      close: () =>
        new Promise<void>((resolve) => {
          finishClose = resolve;
        }),
      deadlineMs: 20,
      exit: rec.exit,
    });
    try {
      process.emit('SIGTERM', 'SIGTERM');
      assert.equal(await rec.exited, 1);
      finishClose();
      await sleep(5);
      assert.deepEqual(rec.codes, [1]);
    } finally {
      uninstall();
    }
  });

  it('exits 1 at once on a second signal while closing', async () => {
    const rec = exitRecorder();
    let calls = 0;
    const uninstall = installShutdownHandlers({
      close: () => {
        calls++;
        return new Promise<void>(() => {});
      },
      deadlineMs: 60_000,
      exit: rec.exit,
    });
    try {
      process.emit('SIGTERM', 'SIGTERM');
      assert.deepEqual(rec.codes, []);
      process.emit('SIGINT', 'SIGINT');
      assert.deepEqual(rec.codes, [1]);
      assert.equal(calls, 1);
    } finally {
      // Also clears the 60 s deadline timer, so the test leaves no handle behind.
      uninstall();
    }
  });

  it('uninstall removes the listeners', () => {
    const before = process.listenerCount('SIGTERM');
    const uninstall = installShutdownHandlers({ close: async () => {}, signals: ['SIGTERM'], exit: () => {} });
    assert.equal(process.listenerCount('SIGTERM'), before + 1);
    uninstall();
    assert.equal(process.listenerCount('SIGTERM'), before);
  });
});
