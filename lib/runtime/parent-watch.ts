/**
 * A notebook kernel that outlives the process that started it.
 *
 * jupyter_client starts every kernel in a session of its own (so that an
 * interrupt reaches the kernel's whole process group), and the tslab kernel,
 * unlike ipykernel, does not watch its parent. So when the headless runner is
 * killed (SIGKILL to its process group: a timeout, the OOM killer, a user), the
 * tslab kernel lives on and keeps executing the current cell, training into
 * the same run folder that the resumed runner's new kernel is about to train
 * into: two writers on one run.
 *
 * watchParent() closes that hole the way ipykernel does: when the kernel was
 * started with JPY_PARENT_PID (jupyter_client sets it for non-independent
 * kernels: nbconvert, jupyter server), a worker thread checks every
 * `intervalMs` that this parent is still there, and when it is gone it
 * SIGKILLs its own process. A worker thread, because a cell blocks the main
 * thread for minutes (one training step is synchronous); a signal, because
 * `process.exit` in a worker ends only the worker.
 */
import { Worker } from 'node:worker_threads';

let watching: Worker | undefined;

// Runs in the worker. The parent is gone when it does not exist any more or
// is no longer our parent (we were re-parented, e.g. to init).
const WATCH_SOURCE = `
const { workerData } = require('node:worker_threads');
const { parent, interval, wasChild } = workerData;
function gone() {
  if (wasChild && process.ppid !== parent) return true;
  try { process.kill(parent, 0); return false; } catch (e) { return e.code !== 'EPERM'; }
}
setInterval(() => { if (gone()) process.kill(process.pid, 'SIGKILL'); }, interval);
`;

/**
 * Start the watch (once per process) when JPY_PARENT_PID names a parent
 * process; returns whether it watches. Does nothing in plain scripts and tests.
 */
export function watchParent(env: NodeJS.ProcessEnv = process.env, intervalMs = 1000): boolean {
  if (watching) return true;
  const parent = Number(env.JPY_PARENT_PID);
  if (!Number.isInteger(parent) || parent <= 1 || parent === process.pid) return false;
  const worker = new Worker(WATCH_SOURCE, { eval: true, workerData: { parent, interval: intervalMs, wasChild: process.ppid === parent } });
  worker.unref();
  watching = worker;
  return true;
}
