/**
 * Tests for lib/runtime: safetensors, atomic writes, checkpoints, run folders,
 * profiles, the PRNG and progress output. All run on the tfjs 'cpu' backend in
 * temp folders and finish in a few seconds.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import * as tf from '@tensorflow/tfjs';
import { decodeSafetensors, encodeSafetensors, readSafetensors, SafeTensor } from '../../../lib/runtime/safetensors';
import { appendJsonLine, readJsonLines, writeFileAtomic } from '../../../lib/runtime/atomic';
import { checkpointName, diffConfig, latestCheckpoint, loadCheckpoint, saveCheckpoint } from '../../../lib/runtime/checkpoint';
import { configHash, openRun } from '../../../lib/runtime/run';
import { activeProfile, pick, profileBanner, PROFILES } from '../../../lib/runtime/profile';
import { rng, rngFromState, seedFrom } from '../../../lib/runtime/seed';
import { formatDuration, progress } from '../../../lib/runtime/progress';
import { checkoutCommit } from '../../../lib/runtime/paths';
import { throwsOH } from '../../helpers';

let tmpRoot = '';
let counter = 0;
/** A fresh empty folder per test. */
function tmpDir(): string {
  const d = path.join(tmpRoot, `t${counter++}`);
  fs.mkdirSync(d, { recursive: true });
  return d;
}

before(async () => {
  await tf.setBackend('cpu');
  tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'orderhead-runtime-'));
});
after(() => {
  fs.rmSync(tmpRoot, { recursive: true, force: true });
});


/** A safetensors image with an arbitrary (possibly invalid) header object. */
function rawFile(header: unknown, data: Uint8Array, headerText?: string): Buffer {
  const json = Buffer.from(headerText ?? JSON.stringify(header), 'utf8');
  const out = Buffer.alloc(8 + json.length + data.length);
  out.writeBigUInt64LE(BigInt(json.length), 0);
  json.copy(out, 8);
  out.set(data, 8 + json.length);
  return out;
}

const sample: Record<string, SafeTensor> = {
  'w.f32': { dtype: 'F32', shape: [2, 3], data: new Float32Array([1.5, -2, 3.25, 0, 1e-7, -1e30]) },
  'idx.i32': { dtype: 'I32', shape: [4], data: new Int32Array([0, -1, 2147483647, -2147483648]) },
  scalar: { dtype: 'F32', shape: [], data: new Float32Array([42.5]) },
  empty: { dtype: 'F32', shape: [0], data: new Float32Array(0) },
  empty2d: { dtype: 'I32', shape: [2, 0], data: new Int32Array(0) },
  bytes: { dtype: 'U8', shape: [3], data: new Uint8Array([0, 7, 255]) },
  mask: { dtype: 'BOOL', shape: [2], data: new Uint8Array([1, 0]) },
};

// ---------------------------------------------------------------- safetensors

test('safetensors round-trips F32, I32, U8, BOOL, scalar and empty tensors with metadata', () => {
  const buf = encodeSafetensors(sample, { note: 'hello', unicode: 'ünï' });
  const { tensors, metadata } = decodeSafetensors(buf, 'mem.safetensors');
  assert.deepEqual(metadata, { note: 'hello', unicode: 'ünï' });
  assert.deepEqual(Object.keys(tensors).sort(), Object.keys(sample).sort());
  for (const [name, t] of Object.entries(sample)) {
    assert.equal(tensors[name].dtype, t.dtype, name);
    assert.deepEqual(tensors[name].shape, t.shape, name);
    assert.equal(tensors[name].data.constructor, t.data.constructor, name);
    assert.deepEqual(Array.from(tensors[name].data), Array.from(t.data), name);
  }
});

test('safetensors header is space-padded to 8-byte alignment and offsets are contiguous', () => {
  // Try several name lengths so that every padding amount 0..7 occurs.
  const pads = new Set<number>();
  for (let k = 0; k < 16; k++) {
    const buf = encodeSafetensors({ ['x'.repeat(k + 1)]: { dtype: 'F32', shape: [1], data: new Float32Array([k]) } }, {});
    const n = Number(buf.readBigUInt64LE(0));
    assert.equal((8 + n) % 8, 0);
    const text = buf.subarray(8, 8 + n).toString('utf8');
    const trimmed = text.trimEnd();
    assert.ok(/^ *$/.test(text.slice(trimmed.length)), 'padding must be spaces');
    pads.add(n - Buffer.byteLength(trimmed));
    assert.equal(text[0], '{');
  }
  assert.equal(pads.size, 8, `expected every padding 0..7, saw ${[...pads]}`);

  const buf = encodeSafetensors(sample, { a: 'b' });
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  const spans = Object.entries(header)
    .filter(([k]) => k !== '__metadata__')
    .map(([, v]) => (v as { data_offsets: [number, number] }).data_offsets)
    .sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let pos = 0;
  for (const [b, e] of spans) {
    assert.equal(b, pos, 'no gaps between tensors');
    pos = e;
  }
  assert.equal(8 + n + pos, buf.length, 'the data section ends at end of file');
  // 4-byte tensors come first, so each starts 4-byte aligned in the file.
  for (const [name, v] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const info = v as { dtype: string; data_offsets: [number, number] };
    if (info.dtype === 'F32' || info.dtype === 'I32') assert.equal((8 + n + info.data_offsets[0]) % 4, 0, name);
  }
});

test('safetensors decoding refuses truncated, malformed and inconsistent files, naming the file', () => {
  const f = 'bad.safetensors';
  const good = encodeSafetensors(sample, {});
  throwsOH(() => decodeSafetensors(new Uint8Array(5), f), f, 'truncated');
  const pastEof = Buffer.alloc(16);
  pastEof.writeBigUInt64LE(1000n, 0);
  throwsOH(() => decodeSafetensors(pastEof, f), f, 'past end of file');
  const huge = Buffer.alloc(16);
  huge.writeBigUInt64LE(2n ** 62n, 0);
  throwsOH(() => decodeSafetensors(huge, f), f, 'limit');
  throwsOH(() => decodeSafetensors(rawFile(null, new Uint8Array(0), '{"a": [1, 2'), f), f, 'not valid JSON');
  throwsOH(() => decodeSafetensors(rawFile([1, 2], new Uint8Array(0)), f), f, 'not a JSON object');
  throwsOH(
    () => decodeSafetensors(rawFile({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } }, new Uint8Array(4)), f),
    f,
    "tensor 'a' ends at byte 8",
    'truncated',
  );
  throwsOH(
    () =>
      decodeSafetensors(
        rawFile(
          { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } },
          new Uint8Array(12),
        ),
        f,
      ),
    f,
    'overlap',
  );
  // A short tensor between two others must not hide an overlap.
  throwsOH(
    () =>
      decodeSafetensors(
        rawFile(
          {
            big: { dtype: 'U8', shape: [100], data_offsets: [0, 100] },
            e: { dtype: 'U8', shape: [0], data_offsets: [10, 10] },
            c: { dtype: 'U8', shape: [10], data_offsets: [50, 60] },
          },
          new Uint8Array(100),
        ),
        f,
      ),
    'overlap',
  );
  throwsOH(
    () => decodeSafetensors(rawFile({ a: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, new Uint8Array(8)), f),
    f,
    'needs 12',
  );
  throwsOH(() => decodeSafetensors(rawFile({ a: { dtype: 'F32', shape: [2], data_offsets: [8, 0] } }, new Uint8Array(8)), f), f, 'data_offsets');
  throwsOH(() => decodeSafetensors(rawFile({ a: { dtype: 'F32', shape: [-1], data_offsets: [0, 0] } }, new Uint8Array(0)), f), f, 'shape');
  throwsOH(() => decodeSafetensors(rawFile({ a: { dtype: 'F16', shape: [2], data_offsets: [0, 4] } }, new Uint8Array(4)), f), f, 'F16', 'tensor.float()');
  throwsOH(() => decodeSafetensors(rawFile({ __metadata__: { x: 1 } }, new Uint8Array(0)), f), f, '__metadata__.x');
  throwsOH(() => decodeSafetensors(good.subarray(0, good.length - 3), f), f, 'truncated');
  // A missing file is named too.
  const missing = path.join(tmpRoot, 'nope.safetensors');
  throwsOH(() => readSafetensors(missing), missing, 'does not exist');
});

test('safetensors encoding refuses inconsistent tensors and non-string metadata', () => {
  throwsOH(() => encodeSafetensors({ a: { dtype: 'F32', shape: [2, 2], data: new Float32Array(3) } }), "'a'", 'needs 4');
  throwsOH(() => encodeSafetensors({ a: { dtype: 'I32', shape: [2], data: new Float32Array(2) } }), "'a'", 'does not match');
  throwsOH(() => encodeSafetensors({ a: { dtype: 'F32', shape: [1.5], data: new Float32Array(1) } }), 'shape');
  throwsOH(() => encodeSafetensors({ __metadata__: { dtype: 'F32', shape: [1], data: new Float32Array(1) } }), 'reserved');
  throwsOH(() => encodeSafetensors({}, { n: 3 as unknown as string }), '__metadata__.n', 'only strings');
});

test('python3 reads the header and data written here (torch too, when installed)', (t) => {
  const py = '/usr/bin/python3';
  if (!fs.existsSync(py)) {
    t.skip('/usr/bin/python3 not installed');
    return;
  }
  const file = path.join(tmpDir(), 'cross.safetensors');
  fs.writeFileSync(file, encodeSafetensors(sample, { source: 'orderhead' }));
  const script = `
import json, struct, sys
b = open(sys.argv[1], 'rb').read()
n, = struct.unpack('<Q', b[:8])
h = json.loads(b[8:8 + n].decode('utf-8'))
fmt = {'F32': 'f', 'I32': 'i', 'U8': 'B', 'BOOL': '?'}
torch_dt = {}
try:
    import torch
    torch_dt = {'F32': torch.float32, 'I32': torch.int32, 'U8': torch.uint8, 'BOOL': torch.bool}
except Exception:
    torch = None
out = {'aligned': (8 + n) % 8 == 0, 'metadata': h.get('__metadata__', {}), 'tensors': {}, 'torch': None}
for k, v in h.items():
    if k == '__metadata__':
        continue
    s, e = v['data_offsets']
    raw = b[8 + n + s:8 + n + e]
    cnt = (e - s) // struct.calcsize(fmt[v['dtype']])
    vals = [float(x) if v['dtype'] == 'F32' else int(x) for x in struct.unpack('<%d%s' % (cnt, fmt[v['dtype']]), raw)]
    entry = {'dtype': v['dtype'], 'shape': v['shape'], 'values': vals}
    if torch is not None and cnt > 0:
        tt = torch.frombuffer(bytearray(raw), dtype=torch_dt[v['dtype']]).reshape(v['shape'])
        entry['torch_shape'] = list(tt.shape)
        entry['torch_values'] = [float(x) if v['dtype'] == 'F32' else int(x) for x in tt.flatten().tolist()]
        out['torch'] = torch.__version__
    out['tensors'][k] = entry
print(json.dumps(out))
`;
  const res = spawnSync(py, ['-c', script, file], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(res.status, 0, res.stderr);
  const out = JSON.parse(res.stdout);
  assert.equal(out.aligned, true);
  assert.deepEqual(out.metadata, { source: 'orderhead' });
  for (const [name, t] of Object.entries(sample)) {
    const got = out.tensors[name];
    assert.equal(got.dtype, t.dtype, name);
    assert.deepEqual(got.shape, t.shape, name);
    assert.deepEqual(got.values, Array.from(t.data), name);
    if (out.torch && t.data.length > 0) {
      assert.deepEqual(got.torch_shape, t.shape, `${name} (torch)`);
      assert.deepEqual(got.torch_values, Array.from(t.data), `${name} (torch)`);
    }
  }
  t.diagnostic(out.torch ? `checked with torch ${out.torch}` : 'checked with struct/json only (torch not importable)');
});

// ---------------------------------------------------------------- atomic writes

function leftovers(dir: string): string[] {
  return fs.readdirSync(dir).filter((f) => f.includes('.tmp-'));
}

test('writeFileAtomic replaces the file and leaves no temp files', () => {
  const dir = tmpDir();
  const file = path.join(dir, 'a.json');
  writeFileAtomic(file, 'old');
  writeFileAtomic(file, new Uint8Array([110, 101, 119]));
  assert.equal(fs.readFileSync(file, 'utf8'), 'new');
  assert.deepEqual(leftovers(dir), []);
});

test('writeFileAtomic on a full disk keeps the old file and removes the temp file', () => {
  const dir = tmpDir();
  const file = path.join(dir, 'weights.bin');
  fs.writeFileSync(file, 'old contents');
  const enospc = () => Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
  // Fail on the first write...
  const e1 = throwsOH(
    () => writeFileAtomic(file, 'x'.repeat(100), { io: { writeSync: () => { throw enospc(); } } }),
    file,
    'disk full?',
  );
  assert.equal(e1.where, file);
  // ...and after a partial write.
  let calls = 0;
  throwsOH(
    () =>
      writeFileAtomic(file, 'y'.repeat(100), {
        io: {
          writeSync: (fd, buf, off) => {
            if (calls++ === 0) return fs.writeSync(fd, buf, off, 10);
            throw enospc();
          },
        },
      }),
    'disk full?',
  );
  // A failing rename (e.g. EXDEV) is reported too.
  throwsOH(
    () => writeFileAtomic(file, 'z', { io: { renameSync: () => { throw Object.assign(new Error('EXDEV'), { code: 'EXDEV' }); } } }),
    file,
  );
  assert.equal(fs.readFileSync(file, 'utf8'), 'old contents');
  assert.deepEqual(leftovers(dir), []);
  // A missing folder is explained.
  throwsOH(() => writeFileAtomic(path.join(dir, 'no', 'such.json'), '{}'), 'does not exist');
});

test('appendJsonLine/readJsonLines keep NaN, skip and report a torn last line, and recover on the next append', () => {
  const file = path.join(tmpDir(), 'metrics.jsonl');
  appendJsonLine(file, { step: 1, loss: 0.5 });
  appendJsonLine(file, { step: 2, loss: NaN, lr: Infinity });
  fs.appendFileSync(file, '{"step":3,"lo'); // a write cut short by a kill
  const warnings: string[] = [];
  const r1 = readJsonLines(file, { warn: (m) => warnings.push(m) });
  assert.deepEqual(r1.rows, [
    { step: 1, loss: 0.5 },
    { step: 2, loss: 'NaN', lr: 'Infinity' },
  ]);
  assert.equal(r1.skipped.length, 1);
  assert.equal(r1.skipped[0].torn, true);
  assert.equal(r1.skipped[0].line, 3);
  assert.equal(warnings.length, 1);
  assert.match(warnings[0], /torn last line 3/);

  // The next append starts a fresh line instead of gluing onto the torn one.
  appendJsonLine(file, { step: 4, loss: 0.25 });
  const r2 = readJsonLines(file, { warn: () => {} });
  assert.deepEqual(r2.rows.map((r) => r.step), [1, 2, 4]);
  assert.equal(r2.skipped.length, 1);
  assert.equal(r2.skipped[0].torn, false);

  const enospc = () => {
    throw Object.assign(new Error('ENOSPC'), { code: 'ENOSPC' });
  };
  throwsOH(() => appendJsonLine(file, { step: 5 }, { appendFileSync: enospc }), file, 'disk full?');
  throwsOH(() => readJsonLines(path.join(tmpRoot, 'missing.jsonl')), 'does not exist');
});

// ---------------------------------------------------------------- checkpoints

const cfg = { model: { dModel: 64, layers: 2 }, lr: 0.001, profile: 'smoke' };

test('checkpointName formats steps and tags', () => {
  assert.equal(checkpointName('stage1', 500, ['r1.00']), 'stage1-step000500-r1.00');
  assert.equal(checkpointName('stage1', 1234567), 'stage1-step1234567');
  throwsOH(() => checkpointName('stage 1', 1), 'prefix');
  throwsOH(() => checkpointName('stage1', -1), 'step');
  throwsOH(() => checkpointName('stage1', 1, ['a/b']), 'tag');
});

test('checkpoint save/load round-trips weights, config, step and extra without leaking tensors', () => {
  const dir = tmpDir();
  const before = tf.memory().numTensors;
  const w = {
    'emb.table': tf.tensor2d([[1, 2], [3, 4], [5, 6]]),
    'pos.ids': tf.tensor1d([3, 1, 2], 'int32'),
    'mask': tf.tensor1d([true, false], 'bool'),
    'head.bias': tf.scalar(0.25),
  };
  const file = saveCheckpoint(dir, checkpointName('stage1', 10), {
    weights: { ...w, 'raw.f32': new Float32Array([7, 8]) },
    config: cfg,
    step: 10,
    extra: { rngState: 1234, best: 0.5 },
  });
  tf.dispose(Object.values(w));
  assert.equal(file, path.join(dir, 'stage1-step000010.safetensors'));
  assert.deepEqual(leftovers(dir), []);

  const ck = loadCheckpoint<typeof cfg>(file, { expectConfig: cfg });
  assert.equal(ck.step, 10);
  assert.equal(ck.kind, 'stage1');
  assert.deepEqual(ck.config, cfg);
  assert.deepEqual(ck.extra, { rngState: 1234, best: 0.5 });
  assert.deepEqual(ck.weights['emb.table'].shape, [3, 2]);
  assert.deepEqual(Array.from(ck.weights['emb.table'].dataSync()), [1, 2, 3, 4, 5, 6]);
  assert.equal(ck.weights['pos.ids'].dtype, 'int32');
  assert.deepEqual(Array.from(ck.weights['pos.ids'].dataSync()), [3, 1, 2]);
  assert.equal(ck.weights['mask'].dtype, 'bool');
  assert.deepEqual(Array.from(ck.weights['mask'].dataSync()), [1, 0]);
  assert.deepEqual(ck.weights['head.bias'].shape, []);
  assert.deepEqual(Array.from(ck.weights['raw.f32'].dataSync()), [7, 8]);
  tf.dispose(Object.values(ck.weights));
  assert.equal(tf.memory().numTensors, before, 'no tensors leaked');
});

test('saveCheckpoint refuses NaN/Inf weights, naming the tensor, and keeps the old file', () => {
  const dir = tmpDir();
  const name = checkpointName('stage1', 1);
  const good = tf.tensor1d([1, 2, 3]);
  const file = saveCheckpoint(dir, name, { weights: { 'a.w': good }, config: cfg, step: 1 });
  const oldBytes = fs.readFileSync(file);
  const bad = tf.tensor1d([1, NaN, Infinity]);
  throwsOH(() => saveCheckpoint(dir, name, { weights: { 'a.w': good, 'blocks.0.q': bad }, config: cfg, step: 1 }), "'blocks.0.q'", '2 non-finite', file);
  throwsOH(() => saveCheckpoint(dir, name, { weights: { inf: new Float32Array([-Infinity]) }, config: cfg, step: 1 }), "'inf'");
  assert.deepEqual(fs.readFileSync(file), oldBytes);
  // Disk full while saving: the old checkpoint is unchanged too.
  throwsOH(
    () =>
      saveCheckpoint(dir, name, {
        weights: { 'a.w': tf.tensor1d([9, 9, 9]) },
        config: cfg,
        step: 1,
        io: { writeSync: () => { throw Object.assign(new Error('ENOSPC'), { code: 'ENOSPC' }); } },
      }),
    'disk full?',
    file,
  );
  assert.deepEqual(fs.readFileSync(file), oldBytes);
  assert.deepEqual(leftovers(dir), []);
  tf.dispose([good, bad]);
});

test('loadCheckpoint names each differing config field with both values', () => {
  const dir = path.join(tmpDir(), 'runA', 'checkpoints');
  const file = saveCheckpoint(dir, checkpointName('stage1', 5), { weights: { w: new Float32Array([1]) }, config: cfg, step: 5 });
  const other = { ...cfg, lr: 0.0003, model: { dModel: 64, layers: 4 } };
  const before = tf.memory().numTensors;
  const err = throwsOH(() => loadCheckpoint(file, { expectConfig: other }), 'lr: checkpoint 0.001, current 0.0003', 'model.layers: checkpoint 2, current 4', 'step 5', 'runA');
  assert.ok(!err.message.includes('dModel'), 'equal fields are not listed');
  assert.equal(tf.memory().numTensors, before, 'a refused load creates no tensors');
  // Only the compared keys count; key order and undefined fields never do.
  const ok = loadCheckpoint(file, { expectConfig: other, compareKeys: ['model.dModel', 'profile'] });
  tf.dispose(Object.values(ok.weights));
  const reordered = loadCheckpoint(file, { expectConfig: { profile: 'smoke', lr: 0.001, model: { layers: 2, dModel: 64 }, note: undefined } });
  tf.dispose(Object.values(reordered.weights));
  throwsOH(() => loadCheckpoint(file, { expectConfig: { ...cfg, extraField: 1 } }), 'extraField: checkpoint (absent), current 1');
  assert.deepEqual(diffConfig({ a: [1, { b: 2, c: 3 }] }, { a: [1, { c: 3, b: 2 }] }), []);
});

test('loadCheckpoint refuses missing, truncated, foreign and non-finite files', () => {
  const dir = tmpDir();
  const missing = path.join(dir, 'stage1-step000001.safetensors');
  throwsOH(() => loadCheckpoint(missing), missing, 'does not exist');

  const file = saveCheckpoint(dir, 'stage1-step000002', { weights: { w: new Float32Array(64) }, config: cfg, step: 2 });
  const truncated = path.join(dir, 'truncated.safetensors');
  const bytes = fs.readFileSync(file);
  fs.writeFileSync(truncated, bytes.subarray(0, bytes.length - 10));
  throwsOH(() => loadCheckpoint(truncated), truncated, 'truncated');

  const foreign = path.join(dir, 'foreign.safetensors');
  fs.writeFileSync(foreign, encodeSafetensors({ w: { dtype: 'F32', shape: [1], data: new Float32Array([1]) } }, {}));
  throwsOH(() => loadCheckpoint(foreign), foreign, 'not an OrderHead checkpoint');

  const nan = path.join(dir, 'nan.safetensors');
  fs.writeFileSync(
    nan,
    encodeSafetensors({ 'layer.w': { dtype: 'F32', shape: [2], data: new Float32Array([0, NaN]) } }, { config: '{}', step: '3', kind: 'stage1' }),
  );
  const before = tf.memory().numTensors;
  throwsOH(() => loadCheckpoint(nan), nan, "'layer.w'", 'non-finite');
  assert.equal(tf.memory().numTensors, before);
});

test('latestCheckpoint picks the highest step for the prefix and ignores temp files and other prefixes', () => {
  const dir = tmpDir();
  assert.equal(latestCheckpoint(path.join(dir, 'missing'), 'stage1'), undefined);
  assert.equal(latestCheckpoint(dir, 'stage1'), undefined);
  for (const step of [5, 1500, 40]) {
    saveCheckpoint(dir, checkpointName('stage1', step, ['r1.00']), { weights: { w: new Float32Array([step]) }, config: cfg, step });
  }
  saveCheckpoint(dir, checkpointName('stage2', 99999), { weights: { w: new Float32Array([1]) }, config: cfg, step: 99999 });
  saveCheckpoint(dir, checkpointName('stage1b', 99999), { weights: { w: new Float32Array([1]) }, config: cfg, step: 99999 });
  fs.writeFileSync(path.join(dir, 'stage1-step999999.safetensors.tmp-1-abcd'), 'partial');
  const latest = latestCheckpoint(dir, 'stage1');
  assert.ok(latest);
  assert.equal(latest.step, 1500);
  assert.equal(latest.name, 'stage1-step001500-r1.00');
  assert.equal(latest.path, path.join(dir, 'stage1-step001500-r1.00.safetensors'));
});

// ---------------------------------------------------------------- run folders

test('openRun creates the folder layout, logs metrics and artifacts, and resumes only the same config', () => {
  const root = tmpDir();
  const run = openRun({ root, stage: 'stage1', name: 'exp', config: cfg, backend: 'cpu' });
  assert.equal(run.dir, path.join(root, 'exp'));
  assert.equal(run.resumed, false);
  assert.deepEqual(JSON.parse(fs.readFileSync(path.join(run.dir, 'config.json'), 'utf8')), cfg);
  assert.ok(fs.statSync(run.checkpointDir).isDirectory());
  assert.ok(fs.statSync(run.artifactsDir).isDirectory());
  assert.ok(fs.existsSync(run.metricsPath));
  const manifest = JSON.parse(fs.readFileSync(path.join(run.dir, 'manifest.json'), 'utf8'));
  assert.equal(manifest.starts[0].node, process.version);
  assert.equal(manifest.starts[0].tfjs, tf.version.tfjs);
  assert.equal(manifest.starts[0].backend, 'cpu');

  run.logMetrics(1, { loss: 2.5 });
  run.logMetrics(2, { loss: 2.0, phase: 'train' });
  assert.deepEqual(run.readMetrics().map((r) => [r.step, r.loss]), [[1, 2.5], [2, 2.0]]);
  const art = run.saveArtifact('plots/loss.html', '<div></div>');
  assert.equal(art, path.join(run.artifactsDir, 'plots', 'loss.html'));
  assert.equal(fs.readFileSync(art, 'utf8'), '<div></div>');
  throwsOH(() => run.artifactPath('../config.json'), 'outside');
  throwsOH(() => run.logMetrics(-1, {}), 'step');

  // Different config: refused, naming the field, with or without resume.
  throwsOH(() => openRun({ root, stage: 'stage1', name: 'exp', config: { ...cfg, lr: 0.01 }, resume: true }), 'lr: run 0.001, current 0.01', 'never mixed');
  throwsOH(() => openRun({ root, stage: 'stage1', name: 'exp', config: { ...cfg, lr: 0.01 } }), 'lr: run 0.001, current 0.01');
  // Same config, not resuming: refused because it already holds metrics.
  throwsOH(() => openRun({ root, stage: 'stage1', name: 'exp', config: cfg }), 'resume: true');
  // Same config, resuming: metrics kept, manifest records the restart.
  saveCheckpoint(run.checkpointDir, checkpointName('stage1', 2), { weights: { w: new Float32Array([1]) }, config: cfg, step: 2 });
  const again = openRun({ root, stage: 'stage1', name: 'exp', config: { ...cfg }, resume: true });
  assert.equal(again.resumed, true);
  assert.equal(again.readMetrics().length, 2);
  assert.equal(again.manifest.starts.length, 2);
  assert.equal(again.latestCheckpoint()?.step, 2);

  // Default name follows the config hash.
  const auto = openRun({ root, stage: 'stage2', config: cfg });
  assert.equal(auto.name, `stage2-${configHash(cfg)}`);
  assert.equal(configHash({ b: 1, a: 2 }), configHash({ a: 2, b: 1 }));
  // A non-empty folder without config.json is not taken over.
  fs.mkdirSync(path.join(root, 'junk'));
  fs.writeFileSync(path.join(root, 'junk', 'x.txt'), 'x');
  throwsOH(() => openRun({ root, stage: 'stage1', name: 'junk', config: cfg }), 'no config.json');
});

// ---------------------------------------------------------------- profiles

test('profiles: default when unset, unknown names list the valid ones, banner and pick', () => {
  assert.deepEqual([...PROFILES], ['smoke', 'default', 'full']);
  assert.equal(activeProfile({}), 'default');
  assert.equal(activeProfile({ ORDERHEAD_PROFILE: '' }), 'default');
  assert.equal(activeProfile({ ORDERHEAD_PROFILE: ' Smoke ' }), 'smoke');
  assert.equal(activeProfile({ ORDERHEAD_PROFILE: 'full' }), 'full');
  throwsOH(() => activeProfile({ ORDERHEAD_PROFILE: 'smok' }), 'ORDERHEAD_PROFILE', "'smok'", 'smoke, default, full');
  assert.equal(profileBanner('smoke'), 'Profile: smoke (ORDERHEAD_PROFILE=smoke) — tiny data, few steps; results are for CI, not for conclusions');
  assert.ok(!profileBanner('default').includes('\n'));
  const steps = { smoke: 20, default: 2000, full: 20000 };
  assert.equal(pick(steps, 'smoke'), 20);
  assert.equal(pick(steps, 'full'), 20000);
  throwsOH(() => pick({ smoke: 1 } as unknown as typeof steps, 'full'), "no entry for 'full'");
});

// ---------------------------------------------------------------- PRNG

test('rng is deterministic per seed and its helpers behave', () => {
  const seq = (s: number | string) => {
    const r = rng(s);
    return Array.from({ length: 5 }, () => r.next());
  };
  assert.deepEqual(seq(42), seq(42));
  assert.deepEqual(seq('data-order'), seq('data-order'));
  assert.notDeepEqual(seq(42), seq(43));
  assert.notEqual(seedFrom(1, 'a'), seedFrom(1, 'b'));
  assert.notEqual(seedFrom('1'), seedFrom(1));

  const r = rng(7);
  let sum = 0;
  let sumSq = 0;
  const n = 20000;
  for (let i = 0; i < n; i++) {
    const u = r.next();
    assert.ok(u >= 0 && u < 1);
    const k = r.int(10);
    assert.ok(Number.isInteger(k) && k >= 0 && k < 10);
    const z = r.normal();
    sum += z;
    sumSq += z * z;
  }
  assert.ok(Math.abs(sum / n) < 0.05, `normal mean ${sum / n}`);
  assert.ok(Math.abs(sumSq / n - 1) < 0.05, `normal variance ${sumSq / n}`);

  const a = Array.from({ length: 50 }, (_, i) => i);
  const s1 = rng(3).shuffle([...a]);
  assert.deepEqual(rng(3).shuffle([...a]), s1);
  assert.deepEqual([...s1].sort((x, y) => x - y), a);
  assert.notDeepEqual(s1, a);

  // state() resumes the exact stream.
  const g = rng(99);
  g.next();
  const cont = rngFromState(g.state());
  assert.deepEqual([g.next(), g.int(1000), g.normal()], [cont.next(), cont.int(1000), cont.normal()]);
  throwsOH(() => r.int(0), 'rng.int');
  throwsOH(() => rng(NaN), 'seed');
});

// ---------------------------------------------------------------- progress

test('progress: TTY redraws in place (throttled), logs print about every 10%, sinks get the line', () => {
  let clock = 0;
  const now = () => clock;

  const ttyOut: string[] = [];
  const tty = progress({ total: 100, label: 'train', stream: { isTTY: true, columns: 200, write: (s) => ttyOut.push(s) }, now });
  for (let i = 0; i < 100; i++) {
    clock += 10; // 10 ms per step: at most one redraw per 100 ms
    tty.tick(1, { loss: 1 / (i + 1) });
  }
  tty.done();
  assert.ok(ttyOut.length <= 12, `${ttyOut.length} redraws`);
  assert.ok(ttyOut.every((s) => s.startsWith('\r')));
  assert.ok(ttyOut[ttyOut.length - 1].endsWith('\n'));
  assert.match(ttyOut[ttyOut.length - 1], /train \[#{20}\] 100% 100\/100 100 it\/s done in 0:01 loss=0\.01/);

  clock = 0;
  const logOut: string[] = [];
  const log = progress({ total: 1000, label: 'eval', stream: { isTTY: false, write: (s) => logOut.push(s) }, now });
  for (let i = 0; i < 1000; i++) {
    clock += 5;
    log.tick();
  }
  log.done();
  assert.equal(logOut.length, 10, logOut.join('')); // 10%..90% plus the final line
  assert.match(logOut[0], /eval \[##\.{18}\] 10% 100\/1000 200 it\/s ETA 0:05/);
  assert.ok(logOut.every((s) => s.endsWith('\n') && !s.includes('\r')));

  clock = 0;
  const shown: string[] = [];
  const nb = progress({ total: 4, label: 'sample', sink: (t) => shown.push(t), now });
  nb.tick(2);
  clock += 50;
  nb.tick(1); // throttled
  clock += 100;
  nb.tick(1);
  nb.done();
  nb.done(); // idempotent
  assert.equal(shown.length, 3);
  assert.match(shown[2], /sample .* 100% 4\/4/);
  assert.equal(formatDuration(3723), '1:02:03');
});

test('checkoutCommit: the short hash, "+changes" when a tracked file differs, "unknown" outside a repository', () => {
  const repo = fs.mkdtempSync(path.join(os.tmpdir(), 'oh-commit-'));
  try {
    const git = (...args: string[]) => spawnSync('git', ['-C', repo, '-c', 'user.name=t', '-c', 'user.email=t@t', ...args], { encoding: 'utf8' });
    assert.equal(checkoutCommit(repo), 'unknown', 'not a repository yet');
    git('init', '-q');
    fs.writeFileSync(path.join(repo, 'a.txt'), 'one');
    git('add', 'a.txt');
    git('commit', '-qm', 'first');
    const head = git('rev-parse', '--short', 'HEAD').stdout.trim();
    assert.match(head, /^[0-9a-f]{7,}$/);
    assert.equal(checkoutCommit(repo), head);
    fs.writeFileSync(path.join(repo, 'untracked.txt'), 'x'); // untracked files are not the code that ran
    assert.equal(checkoutCommit(repo), head);
    fs.writeFileSync(path.join(repo, 'a.txt'), 'two');
    assert.equal(checkoutCommit(repo), `${head}+changes`);
  } finally {
    fs.rmSync(repo, { recursive: true, force: true });
  }
});

// ---- bad input ----
// What a user (or a crash) can get wrong here. Each test asserts an
// OrderHeadError naming the file or config field with a fix (expectOH /
// rejectsOH), and that the temp folder is byte-identical afterwards, nothing
// added (untouched); both in tests/helpers.ts.
import { describe } from 'node:test';
import { enospc, expectOH, sandbox, snapshot, tmpFiles, untouched, useWasm, withEnv } from '../../helpers';
import { stage1Checkpoint, tinyStage1 } from '../../fixtures/stage1-job';
import { gptConfig } from '../../../lib/backbone/config';
import { createGPT, disposeGPT } from '../../../lib/backbone/gpt';
import { loadBackbone, trainStage1 } from '../../../lib/backbone/stage1';
import { tokenizerConfig } from '../../../lib/tokenizer';

// Node's fs module itself (not the import wrapper), so a test can make one call fail.
const rawFs: typeof fs = require('node:fs');

describe('bad input', () => {
  test('a truncated weights file (safetensors cut short) is refused, naming the file', async () => {
    await useWasm();
    const root = sandbox();
    const { file } = stage1Checkpoint(root);
    const bytes = fs.readFileSync(file);
    const cut = path.join(root, 'cut.safetensors'), headerOnly = path.join(root, 'header-only.safetensors');
    fs.writeFileSync(cut, bytes.subarray(0, bytes.length - 40));
    fs.writeFileSync(headerOnly, bytes.subarray(0, 6));
    const before = tf.memory().numTensors;
    await untouched(root, () => {
      expectOH(() => loadBackbone(cut), cut, 'truncated', 'earlier checkpoint');
      expectOH(() => loadCheckpoint(headerOnly), headerOnly, 'fewer than the 8-byte header length');
    });
    assert.equal(tf.memory().numTensors, before);
  });

  test('weights containing NaN are refused on load, naming the tensor (and so is resuming from them)', async () => {
    await useWasm();
    const root = sandbox();
    const s1 = stage1Checkpoint(root);
    const { tensors, metadata } = readSafetensors(s1.file);
    const name = 'h1.wq';
    (tensors[name].data as Float32Array)[3] = NaN;
    fs.writeFileSync(s1.file, encodeSafetensors(tensors, metadata));
    const before = tf.memory().numTensors;
    await untouched(root, () => {
      expectOH(() => loadBackbone(s1.file), s1.file, `weight '${name}'`, 'non-finite', 'earlier checkpoint');
      // Resuming the run whose newest checkpoint is poisoned stops before training a step.
      expectOH(() => trainStage1(root, 'block-rar', s1.cfg, s1.data, s1.model), s1.file, `'${name}'`);
    }, ['block-rar/manifest.json']);
    assert.equal(tf.memory().numTensors, before, 'a refused load leaked tensors');
    // Saving NaN weights is refused too, and the good file stays.
    const m = createGPT(s1.model, 1);
    const w = m.params['tok_emb'];
    const good = saveCheckpoint(root, 'good', { weights: { tok_emb: w }, config: s1.model, step: 1 });
    const nanW = tf.fill(w.shape, NaN);
    await untouched(root, () => expectOH(() => saveCheckpoint(root, 'good', { weights: { tok_emb: nanW }, config: s1.model, step: 2 }), good,
      "weight 'tok_emb'", 'refusing to save', 'previous checkpoint is unchanged'));
    nanW.dispose();
    disposeGPT(m);
  });

  test('a Stage 1 checkpoint from another config names the field, on load and on resume', async () => {
    await useWasm();
    const root = sandbox();
    const s1 = stage1Checkpoint(root, 'a');
    // Another run (dModel 32) whose checkpoints/ received the dModel-16 checkpoint by mistake.
    const bigger = gptConfig('tiny', { gridH: 4, gridW: 4, vocabSize: 16, numClasses: 3, dModel: 32 });
    const bDir = openRun({ root, stage: 'stage1', name: 'b', config: { stage1: s1.cfg, model: bigger, data: { n: s1.data.n, uniqueImages: 5, tokenizer: 'tok0' } } }).dir;
    fs.copyFileSync(s1.file, path.join(bDir, 'checkpoints', path.basename(s1.file)));
    const before = tf.memory().numTensors;
    await untouched(root, () => {
      expectOH(() => loadBackbone(s1.file, { dModel: 32 }), s1.file, 'different config', 'dModel: checkpoint 16, current 32');
      expectOH(() => trainStage1(root, 'b', s1.cfg, s1.data, bigger), path.join(bDir, 'checkpoints'), 'dModel: checkpoint 16, current 32', path.join(root, 'b'));
      // The run folder itself reopened with another Stage 1 config.
      expectOH(() => trainStage1(root, 'a', { ...s1.cfg, lr: 0.5 }, s1.data, s1.model), path.join(root, 'a'), 'stage1.lr: run 0.001, current 0.5');
    }, ['b/manifest.json']);
    assert.equal(tf.memory().numTensors, before, 'a refused resume leaked the model or the optimizer');
  });

  test('a torn run config.json (killed editor, bad merge) is refused, naming it', async () => {
    await useWasm();
    const root = sandbox();
    const s1 = stage1Checkpoint(root);
    const cfgFile = path.join(s1.runDir, 'config.json');
    fs.writeFileSync(cfgFile, fs.readFileSync(cfgFile, 'utf8').slice(0, 40));
    await untouched(root, () => {
      expectOH(() => trainStage1(root, 'block-rar', s1.cfg, s1.data, s1.model), cfgFile, 'cannot read the run config', 'delete the file');
    });
  });

  test('an invalid ORDERHEAD_PROFILE lists the valid names and creates no run folder', async () => {
    await useWasm();
    const root = sandbox();
    const s1 = stage1Checkpoint(root);
    await withEnv({ ORDERHEAD_PROFILE: 'smok' }, async () => {
      await untouched(root, () => {
        expectOH(() => activeProfile(), 'ORDERHEAD_PROFILE', "unknown value 'smok'", 'smoke, default, full');
        expectOH(() => tokenizerConfig(), 'ORDERHEAD_PROFILE', 'smoke, default, full');
        expectOH(() => openRun({ root, stage: 'stage1', name: 'new', config: { a: 1 } }), 'ORDERHEAD_PROFILE');
        // Resuming an existing run under the bad profile leaves its manifest and metrics as they were.
        expectOH(() => trainStage1(root, 'block-rar', { ...s1.cfg, steps: 4 }, s1.data, s1.model), 'ORDERHEAD_PROFILE');
      });
    });
  });

  test('out of disk while Stage 1 writes a checkpoint (its validation-selected best file, or its resume checkpoint): error names the file, the previous files are byte-identical, no temp file, no leak', async () => {
    await useWasm();
    // Validation only at the last step (evalEvery past N): step 4 writes its best file first, then its resume checkpoint.
    for (const failing of ['best-step000004-r1.00.safetensors', 'stage1-step000004-r1.00.safetensors']) {
      const root = sandbox();
      const job = tinyStage1();
      const cfg = { ...job.cfg, steps: 4, evalEvery: 100 };
      const first = trainStage1(root, 'full', cfg, job.data, job.model, { maxSteps: 2 });
      disposeGPT(first.model);
      const good = first.checkpoints[0];
      const ckDir = path.dirname(good);
      assert.deepEqual(fs.readdirSync(ckDir), [path.basename(good)], 'no evaluation before step 4');
      const before = snapshot(ckDir);
      const tensors = tf.memory().numTensors;
      // Every write to a temp file of `failing` fails as on a full disk, from step 4's saves on (onStep runs after a step's checkpoint, so the disk fills after step 3).
      const realOpen = rawFs.openSync, realWrite = rawFs.writeSync;
      const tempFds = new Set<number>();
      let full = false;
      (rawFs as { openSync: unknown }).openSync = (...args: Parameters<typeof fs.openSync>) => {
        const fd = realOpen(...args);
        if (String(args[0]).includes('.tmp-') && path.basename(String(args[0])).startsWith(failing)) tempFds.add(fd);
        return fd;
      };
      (rawFs as { writeSync: unknown }).writeSync = (fd: number, ...rest: unknown[]) => {
        if (full && tempFds.has(fd)) throw enospc();
        return (realWrite as (...a: unknown[]) => number)(fd, ...rest);
      };
      try {
        expectOH(() => trainStage1(root, 'full', cfg, job.data, job.model, { onStep: (s) => { if (s === 3) full = true; } }),
          path.join(ckDir, failing), 'no space left on the device', 'previous file, if any, is unchanged', 'free disk space');
      } finally {
        (rawFs as { openSync: unknown }).openSync = realOpen;
        (rawFs as { writeSync: unknown }).writeSync = realWrite;
      }
      // The best file of step 4 was written when only the resume checkpoint failed; nothing else changed.
      const after = snapshot(ckDir);
      if (failing.startsWith('stage1-')) {
        assert.ok(after['best-step000004-r1.00.safetensors'], 'the best file of step 4 (written before the failing save) is missing');
        delete after['best-step000004-r1.00.safetensors'];
      }
      assert.deepEqual(after, before, `${failing}: the checkpoints folder changed`);
      assert.deepEqual(tmpFiles(root), [], `${failing}: a temp file was left behind`);
      assert.equal(tf.memory().numTensors, tensors, `${failing}: the failed run leaked tensors`);
      // With space again, the run resumes from the good checkpoint and finishes, with its best file.
      const done = trainStage1(root, 'full', cfg, job.data, job.model);
      assert.equal(done.steps, 4);
      assert.deepEqual(fs.readdirSync(ckDir).filter((f) => f.startsWith('best-')), ['best-step000004-r1.00.safetensors']);
      disposeGPT(done.model);
    }
  });

  test('out of disk on an injected write failure in saveCheckpoint: the old file stays byte-identical', async () => {
    await useWasm();
    const root = sandbox();
    const w = { w: new Float32Array([1, 2, 3]) };
    const file = saveCheckpoint(root, 'tokenizer-step000001', { weights: w, config: { a: 1 }, step: 1 });
    let calls = 0;
    await untouched(root, () => {
      // Fails after a partial write, as a disk filling up mid-file does.
      expectOH(() => saveCheckpoint(root, 'tokenizer-step000001', {
        weights: { w: new Float32Array(4096) }, config: { a: 1 }, step: 2,
        io: { writeSync: (fd, buf, off) => { if (calls++ === 0) return rawFs.writeSync(fd, buf, off, 16); throw enospc(); } },
      }), file, 'no space left', 'ENOSPC');
      // A failing rename (the disk went read-only) too.
      expectOH(() => saveCheckpoint(root, 'tokenizer-step000001', {
        weights: w, config: { a: 1 }, step: 3, io: { renameSync: () => { throw Object.assign(new Error('EROFS: read-only file system'), { code: 'EROFS' }); } },
      }), file, 'not allowed to write here', 'writable folder');
    });
    assert.equal(loadCheckpoint(file).step, 1);
  });
});
