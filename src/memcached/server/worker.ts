/**
 * Entry point of a serving worker thread (`-t` > 1): builds a {@link ServingThread} over the shared store the main
 * thread posted, binds the same port with `reusePort`, and reports ready.
 *
 * @module
 */

import { parentPort, workerData } from 'node:worker_threads';
import { onWorkerClose, workerFailed, workerReady } from '../../net/thread-group.ts';
import { ServingThread, type ServingThreadInit } from './serving-thread.ts';

const init = workerData as ServingThreadInit;
const thread = new ServingThread(init);
thread.onShutdown = (graceful) => parentPort?.postMessage({ type: 'shutdown', graceful });
onWorkerClose((deadlineMs) => thread.close(deadlineMs));
try {
  workerReady(await thread.listen());
} catch (err) {
  workerFailed(err);
}
