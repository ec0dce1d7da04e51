/**
 * A kernel that survives its own output (issue 27): the tslab kernel of this
 * checkout, started the way the headless runner starts it (jupyter_client's
 * KernelManager from Debian's python3, JUPYTER_PATH=.jupyter/share/jupyter,
 * NODE_OPTIONS=--require dist/scripts/kernel-preload.js), with another
 * CPU-bound process beside it. One cell floods display updates from a worker
 * thread (bursts of 600 messages, each an update in place) and from a timer; while
 * it runs the client keeps sending shell requests (kernel_info, complete,
 * is_complete: each one publishes busy/idle status on iopub in between the
 * display updates) and queues short cells behind it.
 *
 * Passes when the kernel is alive at the end, every cell replied ok, and every
 * cell's output arrived on iopub (the flood cell's summary line, each short
 * cell's stream text and result), every output before its cell's idle status.
 *
 * Without scripts/kernel-preload.ts's send queue (ORDERHEAD_KERNEL_SEND_QUEUE=0,
 * which this test passes to the kernel when ORDERHEAD_STRESS_NO_QUEUE=1) the
 * kernel dies with EBUSY "Socket is busy writing" and the test fails:
 *   ORDERHEAD_STRESS_NO_QUEUE=1 node --test dist/tests/integration/kernel-stress.test.js   # must fail
 * Env: ORDERHEAD_STRESS_FLOOD_S (default 8), ORDERHEAD_STRESS_CELLS (default 12).
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { repoRoot } from '../../lib/runtime/paths';

const root = repoRoot();
const PY = fs.existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
const FLOOD_S = Number(process.env.ORDERHEAD_STRESS_FLOOD_S || 8);
const CELLS = Number(process.env.ORDERHEAD_STRESS_CELLS || 12);

/** The flood cell: the wasm backend as in the notebooks, then a worker thread posting bursts, each message one display update; a timer updating another display. */
const FLOOD_CELL = `
// The notebooks' backend: its Emscripten runtime rethrows every uncaught exception, which ends the kernel.
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
await tf.setBackend('wasm');
import * as tslab from 'tslab';
import { Worker } from 'worker_threads';
const workerDisplay = tslab.newDisplay();
const timerDisplay = tslab.newDisplay();
let fromWorker = 0, fromTimer = 0;
const worker = new Worker(\`
  const { parentPort } = require('worker_threads');
  const end = Date.now() + ${FLOOD_S * 1000};
  let i = 0;
  (function burst() {
    // More than zeromq's 512 synchronous sends in one turn of the kernel's event loop.
    for (let k = 0; k < 600; k++) parentPort.postMessage(i++);
    if (Date.now() < end) setTimeout(burst, 200); else parentPort.postMessage('done');
  })();
\`, { eval: true });
const timer = setInterval(() => {
  for (let k = 0; k < 20; k++) timerDisplay.html('<b>timer</b> ' + fromTimer++);
}, 10);
await new Promise<void>((resolve) => worker.on('message', (m) => {
  if (m === 'done') resolve();
  else { workerDisplay.text('worker update ' + m); fromWorker++; }
}));
clearInterval(timer);
await worker.terminate();
console.log('flood done: ' + fromWorker + ' worker updates, ' + fromTimer + ' timer updates');
`;

const CLIENT = String.raw`
import json, os, queue, sys, threading, time
from jupyter_client.manager import KernelManager

cfg = json.loads(sys.argv[1])
log = open(cfg['kernel_log'], 'w')
km = KernelManager(kernel_name='tslab')
km.start_kernel(cwd=cfg['cwd'], stdout=log, stderr=log)
kc = km.client()
kc.start_channels()
result = {'alive': None, 'cells': [], 'shell_requests': 0, 'shell_replies': 0, 'errors': []}
try:
    kc.wait_for_ready(timeout=180)
    # Every iopub message, sorted by parent msg_id, read by a thread of its own.
    iopub = {}
    stop = threading.Event()
    def read_iopub():
        while not stop.is_set():
            try:
                m = kc.get_iopub_msg(timeout=0.2)
            except queue.Empty:
                continue
            except Exception as e:
                result['errors'].append('iopub: %r' % e)
                return
            pid = m['parent_header'].get('msg_id')
            iopub.setdefault(pid, []).append((m['msg_type'], m['content']))
    reader = threading.Thread(target=read_iopub, daemon=True)
    reader.start()

    cells = [('flood', cfg['flood'])] + [('cell %d' % k, "console.log('cell %d says hello'); %d * 7 + 1" % (k, k)) for k in range(cfg['cells'])]
    ids = []
    flood_id = kc.execute(cfg['flood'])
    ids.append(('flood', flood_id))
    # Shell traffic while the flood runs, short cells queued behind it.
    t_end = time.time() + cfg['flood_s']
    k = 0
    while (time.time() < t_end or k < cfg['cells']) and km.is_alive():
        if k < cfg['cells'] and time.time() > t_end - cfg['flood_s'] * (1 - k / max(cfg['cells'], 1)):
            ids.append(('cell %d' % k, kc.execute(cells[k + 1][1])))
            k += 1
        kc.kernel_info(); kc.complete('Mat', 3); kc.is_complete('1 +')
        result['shell_requests'] += 3
        time.sleep(0.02)
    # Every reply (execute replies among them), until the last cell's.
    want = {mid for _, mid in ids}
    replies = {}
    deadline = time.time() + cfg['reply_timeout']
    while want - set(replies) and time.time() < deadline:
        if not km.is_alive():
            break
        try:
            m = kc.get_shell_msg(timeout=1)
        except queue.Empty:
            continue
        pid = m['parent_header'].get('msg_id')
        if pid in want:
            replies[pid] = m['content']
        else:
            result['shell_replies'] += 1
    # Outputs and idle status after the replies: wait until every cell's idle status came (iopub is ordered).
    def idle(mid):
        return any(t == 'status' and c.get('execution_state') == 'idle' for t, c in list(iopub.get(mid, [])))
    deadline = time.time() + cfg['reply_timeout']
    while not all(idle(mid) for _, mid in ids) and time.time() < deadline and km.is_alive():
        time.sleep(0.2)
    time.sleep(0.5)
    result['alive'] = km.is_alive()
    stop.set()
    reader.join(2)
    for name, mid in ids:
        msgs = iopub.get(mid, [])
        types = [t for t, _ in msgs]
        idle_at = max((i for i, (t, c) in enumerate(msgs) if t == 'status' and c.get('execution_state') == 'idle'), default=-1)
        out_at = [i for i, (t, _) in enumerate(msgs) if t in ('stream', 'execute_result', 'display_data', 'update_display_data')]
        text = ''.join(c.get('text', '') for t, c in msgs if t == 'stream')
        results = [c['data'].get('text/plain', '') for t, c in msgs if t == 'execute_result']
        result['cells'].append({
            'name': name, 'reply': (replies.get(mid) or {}).get('status'), 'stdout': text[-300:], 'results': results,
            'updates': types.count('update_display_data'), 'displays': types.count('display_data'),
            'idle': idle_at >= 0, 'outputs_after_idle': sum(1 for i in out_at if i > idle_at) if idle_at >= 0 else None,
        })
finally:
    try:
        kc.stop_channels()
    except Exception:
        pass
    try:
        km.shutdown_kernel(now=True)
    except Exception:
        pass
print(json.dumps(result))
`;

test('the tslab kernel survives a flood of display updates with shell requests and a busy CPU', { timeout: 420_000 }, async (t) => {
  const preload = path.join(root, 'dist/scripts/kernel-preload.js');
  const spec = path.join(root, '.jupyter/share/jupyter/kernels/tslab/kernel.json');
  if (!fs.existsSync(spec)) {
    t.skip('this checkout\'s tslab kernel is not registered (.jupyter/): run bash scripts/setup.sh');
    return;
  }
  const probe = spawnSync(PY, ['-c', 'import jupyter_client'], { encoding: 'utf8' });
  if (probe.status !== 0) {
    t.skip(`${PY} has no jupyter_client: run bash scripts/setup.sh`);
    return;
  }
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'orderhead-kernel-stress-'));
  const kernelLog = path.join(tmp, 'kernel.log');
  const noQueue = process.env.ORDERHEAD_STRESS_NO_QUEUE === '1';
  // Another CPU-bound process beside the kernel, for the whole test.
  const burner = spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' });
  try {
    const env = {
      ...process.env,
      JUPYTER_PATH: `${path.join(root, '.jupyter/share/jupyter')}${process.env.JUPYTER_PATH ? `:${process.env.JUPYTER_PATH}` : ''}`,
      NODE_OPTIONS: `--require "${preload}"`,
      ORDERHEAD_KERNEL_SEND_QUEUE: noQueue ? '0' : '1',
    };
    const cfg = { cwd: path.join(root, 'notebooks'), kernel_log: kernelLog, flood: FLOOD_CELL, flood_s: FLOOD_S, cells: CELLS, reply_timeout: 120 };
    const started = Date.now();
    const out = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      const p = spawn(PY, ['-c', CLIENT, JSON.stringify(cfg)], { env, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '', stderr = '';
      p.stdout.on('data', (d) => (stdout += d));
      p.stderr.on('data', (d) => (stderr += d));
      p.on('close', (code) => resolve({ code, stdout, stderr }));
    });
    const log = fs.existsSync(kernelLog) ? fs.readFileSync(kernelLog, 'utf8') : '';
    const lastLine = out.stdout.trim().split('\n').pop() ?? '';
    assert.equal(out.code, 0, `the jupyter_client script failed (${out.code}):\n${out.stderr.slice(-2000)}`);
    const r = JSON.parse(lastLine) as {
      alive: boolean; shell_requests: number; shell_replies: number; errors: string[];
      cells: { name: string; reply: string | null; stdout: string; results: string[]; updates: number; displays: number; idle: boolean; outputs_after_idle: number | null }[];
    };
    const flood = r.cells[0];
    t.diagnostic(`queue ${noQueue ? 'OFF' : 'on'}; ${((Date.now() - started) / 1000).toFixed(1)} s; ${r.shell_requests} shell requests, ${r.shell_replies} replies; ` +
      `flood cell: ${flood.reply}, ${flood.updates} updates received, '${flood.stdout.trim()}'; kernel alive: ${r.alive}`);
    const ebusy = /busy writing/.test(log);
    assert.ok(r.alive, `the kernel died${ebusy ? ' (EBUSY: Socket is busy writing)' : ''}; kernel log:\n${log.slice(-3000)}`);
    assert.ok(!ebusy, `the kernel logged EBUSY:\n${log.slice(-3000)}`);
    assert.deepEqual(r.errors, []);
    for (const c of r.cells) {
      assert.equal(c.reply, 'ok', `${c.name}: execute_reply ${c.reply}; kernel log:\n${log.slice(-2000)}`);
      assert.ok(c.idle, `${c.name}: no idle status on iopub`);
      assert.equal(c.outputs_after_idle, 0, `${c.name}: ${c.outputs_after_idle} outputs arrived after its idle status`);
    }
    assert.match(flood.stdout, /flood done: \d+ worker updates, \d+ timer updates/);
    assert.ok(flood.updates > 1000, `only ${flood.updates} display updates arrived from the flood cell`);
    r.cells.slice(1).forEach((c, k) => {
      assert.match(c.stdout, new RegExp(`cell ${k} says hello`), `${c.name}: its stream output did not arrive`);
      // tslab prints a cell's last expression on stdout.
      assert.ok(c.stdout.split('\n').includes(String(k * 7 + 1)), `${c.name}: its value ${k * 7 + 1} did not arrive (stdout: ${JSON.stringify(c.stdout)})`);
    });
    assert.equal(r.cells.length, CELLS + 1);
  } finally {
    burner.kill('SIGKILL');
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});
