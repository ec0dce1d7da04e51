/**
 * scripts/kernel-preload.ts's send queue on a fake zeromq socket that behaves
 * like zeromq 6's: a sealed object whose send() throws EBUSY while an earlier
 * send is still in progress. The kernel-level check (a real tslab kernel under a
 * flood of display updates) is tests/integration/kernel-stress.test.ts.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { patchZmqServer, queueSends } from '../../../scripts/kernel-preload';

class FakeSocket {
  busy = false;
  sent: unknown[] = [];
  constructor(private readonly log: string[], private readonly name: string) {
    Object.seal(this);
  }
  send(msg: unknown): Promise<void> {
    if (this.busy) throw Object.assign(new Error('Socket is busy writing; only one send operation may be in progress at any time'), { code: 'EBUSY' });
    this.busy = true;
    return new Promise((resolve) => setImmediate(() => {
      this.busy = false;
      this.sent.push(msg);
      this.log.push(`${this.name}:${String(msg)}`);
      resolve();
    }));
  }
}
Object.defineProperty(FakeSocket.prototype, 'send', { writable: false });

test('the fake socket throws EBUSY on a second send in flight (what tslab 1.0.22 does to zeromq 6)', () => {
  const sock = new FakeSocket([], 'iopub');
  void sock.send('a');
  assert.throws(() => sock.send('b'), /busy writing/);
});

test('queued sends go out one at a time, in order, none throws', async () => {
  const log: string[] = [];
  const sock = queueSends(new FakeSocket(log, 'iopub'), 'iopub');
  for (let i = 0; i < 1000; i++) void sock.send(i);
  await sock.send('last');
  assert.equal(log.length, 1001);
  assert.deepEqual(log.slice(0, 3), ['iopub:0', 'iopub:1', 'iopub:2']);
  assert.equal(log[1000], 'iopub:last');
});

test('a failed send is logged, not thrown, and the queue goes on', async () => {
  const log: string[] = [];
  const raw = new FakeSocket(log, 'iopub');
  const sock = queueSends(raw, 'iopub');
  void raw.send('outside the queue'); // makes the next queued send throw EBUSY
  await sock.send('collides');
  await new Promise((resolve) => setImmediate(resolve)); // the send outside the queue is done
  await sock.send('after');
  assert.ok(!log.includes('iopub:collides'), 'the colliding send failed');
  assert.ok(log.includes('iopub:after'));
});

test('through ZmqServer: a reply on shell waits for the iopub messages queued before it', async () => {
  const log: string[] = [];
  class ZmqServer {
    // Assigned in init(), as tslab's compiled ZmqServer does (no class fields: they would shadow the patched accessors).
    declare iopub: FakeSocket;
    declare shell: FakeSocket;
    init(): void {
      this.iopub = new FakeSocket(log, 'iopub');
      this.shell = new FakeSocket(log, 'shell');
    }
  }
  assert.equal(patchZmqServer({ ZmqServer }), true);
  assert.equal(patchZmqServer({ ZmqServer }), false, 'patched once');
  const server = new ZmqServer();
  server.init();
  for (let i = 0; i < 50; i++) void server.iopub.send(`update ${i}`);
  await server.shell.send('execute_reply');
  void server.iopub.send('idle');
  await server.iopub.send('after');
  assert.equal(log.indexOf('shell:execute_reply'), 50, 'the reply after all 50 updates');
  assert.deepEqual(log.slice(-2), ['iopub:idle', 'iopub:after']);
});
