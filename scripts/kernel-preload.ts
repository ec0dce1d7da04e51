/**
 * Preloaded into every tslab notebook kernel of this checkout: the headless
 * runner (scripts/run-notebooks.sh) puts `--require` of this file on
 * NODE_OPTIONS, and scripts/setup.sh writes it into the argv of the tslab
 * kernelspecs it registers (so JupyterLab and Jupyter Notebook kernels load it too).
 *
 * 1. The kernel ends itself when the process that started it (nbconvert, the
 *    Jupyter server) is gone (see lib/runtime/parent-watch.ts). startNotebook()
 *    starts the same watch, but only once the first cell runs; a runner killed
 *    while the kernel was starting would otherwise leave an idle kernel behind.
 *
 * 2. Every message the kernel sends goes out one at a time, per socket.
 *    tslab 1.0.22 calls `sock.send(...)` without waiting for the previous send
 *    to finish. zeromq 6 sends synchronously only 512 times in a row; the next
 *    send is deferred to the event loop, and any further send before that
 *    deferred one went out throws EBUSY ("Socket is busy writing; only one send
 *    operation may be in progress at any time"). On the iopub socket (display
 *    updates from worker threads and timers, status messages around every
 *    shell request) that happens sooner or later, and the uncaught exception
 *    ends the kernel. So the sockets tslab's ZmqServer creates get a send queue:
 *    each send starts when the one before it has finished, an error is written
 *    to the kernel's log instead of thrown, and a reply on the shell or control
 *    socket (the execute_reply that ends a cell) waits until every iopub message
 *    queued before it (the cell's outputs and display updates) has been sent.
 *    The iopub socket's high-water mark is lifted (0: no limit), so a flood of
 *    updates to a slow client delays messages instead of dropping them, and
 *    close() (after a shutdown_request) waits until the queues are empty (at most 2 s).
 *    ORDERHEAD_KERNEL_SEND_QUEUE=0 switches the queue off (for the stress test's
 *    check that it fails without it: tests/integration/kernel-stress.test.ts).
 */
import * as fs from 'node:fs';
import Module from 'node:module';
import { isMainThread } from 'node:worker_threads';
import { watchParent } from '../lib/runtime/parent-watch';

/** A zeromq socket as tslab uses it. */
interface SendSocket {
  send(msg: unknown): Promise<void> | undefined;
}

const QUEUE = Symbol.for('orderhead.kernelSendQueue');
const SOCKETS = ['iopub', 'shell', 'control', 'stdin', 'hb'] as const;

interface Queued {
  /** Settles when every send queued so far has finished. */
  drained(): Promise<void>;
  sent: number;
  failed: number;
}

/** Straight to fd 2 (the kernel's log): tslab points process.stderr at iopub while a cell runs. */
function logError(what: string, err: unknown): void {
  try {
    fs.writeSync(2, `orderhead kernel: ${what}: ${err instanceof Error ? err.stack || err.message : String(err)}\n`);
  } catch {
    // no log to write to
  }
}

const queues = new WeakMap<object, Queued>();

/**
 * `sock` with a send queue: a proxy (zeromq's sockets are sealed objects with a
 * read-only `send`) whose `send` waits for the previous one, every other property
 * the socket's own (methods bound to it). `before`, when given, is waited for as it
 * is at the moment of each send (the iopub queue, for replies on shell and control).
 */
export function queueSends<S extends SendSocket>(sock: S, name: string, before?: () => Promise<void>): S {
  if (!sock || typeof sock.send !== 'function' || queues.has(sock)) return sock;
  const send = sock.send.bind(sock);
  let tail: Promise<void> = Promise.resolve();
  const state: Queued = { drained: () => tail, sent: 0, failed: 0 };
  const queued = (msg: unknown) => {
    const prior = before ? Promise.all([tail, before()]) : tail;
    tail = prior
      .then(() => send(msg))
      .then(
        () => {
          state.sent++;
        },
        (err) => {
          state.failed++;
          // A closed socket at shutdown is expected; anything else is worth a line in the log.
          if (!/closed/i.test(String((err as Error)?.message ?? err))) logError(`send on ${name} failed`, err);
        },
      );
    return tail;
  };
  const bound = new Map<PropertyKey, unknown>();
  const proxy = new Proxy(sock, {
    get(target, key) {
      if (key === 'send') return queued;
      const v = Reflect.get(target, key, target);
      if (typeof v !== 'function') return v;
      if (!bound.has(key)) bound.set(key, v.bind(target));
      return bound.get(key);
    },
    set(target, key, value) {
      return Reflect.set(target, key, value, target);
    },
  });
  queues.set(proxy, state);
  return proxy;
}

/** Patch tslab's ZmqServer so that every socket it creates gets a send queue. */
export function patchZmqServer(jupyter: { ZmqServer?: { prototype: object } }): boolean {
  const proto = jupyter?.ZmqServer?.prototype as Record<string | symbol, unknown> | undefined;
  if (!proto || proto[QUEUE]) return false;
  proto[QUEUE] = true;
  for (const name of SOCKETS) {
    const key = Symbol(`orderhead.${name}`);
    Object.defineProperty(proto, name, {
      configurable: true,
      enumerable: false,
      get(this: Record<symbol, unknown>) {
        return this[key];
      },
      set(this: Record<string | symbol, unknown>, sock: SendSocket) {
        const iopubDrained = (): Promise<void> => {
          const iopub = this.iopub as object | undefined;
          return (iopub && queues.get(iopub)?.drained()) ?? Promise.resolve();
        };
        if (name === 'iopub') {
          // A publisher drops what exceeds its high-water mark (1000 messages by default): under a flood
          // of display updates and a slow client, that was a cell's last outputs and its idle status.
          // No limit: the messages wait in the kernel until the client reads them.
          try {
            (sock as unknown as { sendHighWaterMark: number }).sendHighWaterMark = 0;
          } catch (e) {
            logError('could not lift the iopub high-water mark', e);
          }
        }
        this[key] = queueSends(sock, name, name === 'shell' || name === 'control' ? iopubDrained : undefined);
      },
    });
  }
  // A shutdown_request: tslab closes the sockets right after queuing the reply and the idle status; close
  // once they went out (at most 2 s later), so the client gets its shutdown_reply.
  const close = (proto as { close?: (this: Record<string, unknown>) => void }).close;
  if (typeof close === 'function') {
    proto.close = function (this: Record<string, unknown>) {
      const pending = SOCKETS.map((n) => this[n] as object | undefined).map((sock) => (sock && queues.get(sock)?.drained()) ?? Promise.resolve());
      const timeout = new Promise<void>((resolve) => setTimeout(resolve, 2000).unref());
      void Promise.race([Promise.all(pending), timeout]).then(() => close.call(this));
    };
  }
  return true;
}

function installSendQueue(): void {
  // Any copy of tslab's jupyter.js this process loads (tslab may load the one next to the notebook: findLocalStartKernel).
  const mod = Module as unknown as { prototype: { load(this: { exports: unknown }, filename: string): void } };
  const load = mod.prototype.load;
  mod.prototype.load = function (this: { exports: unknown }, filename: string) {
    load.call(this, filename);
    if (/[\\/]tslab[\\/]dist[\\/]jupyter\.js$/.test(filename)) {
      try {
        patchZmqServer(this.exports as { ZmqServer?: { prototype: object } });
      } catch (e) {
        logError('could not add the send queue to tslab', e);
      }
    }
  };
}

if (isMainThread) {
  watchParent();
  if (process.env.ORDERHEAD_KERNEL_SEND_QUEUE !== '0') installSendQueue();
}
