/**
 * The shared training loop (lib/runtime/train-loop.ts) on a toy stage: linear
 * regression with seeded batches. Every stage's own tests (tokenizer, Stage 1,
 * planner, router, joint, feature net) check the same contract on real models.
 */
import test from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { useWasm, throwsOH } from '../../helpers';
import { openRun } from '../../../lib/runtime/run';
import { AdamW, OptimConfig, scheduledLr, validateOptimConfig } from '../../../lib/runtime/optim';
import { latestCheckpoint } from '../../../lib/runtime/checkpoint';
import { saveCheckpoint, checkpointName } from '../../../lib/runtime/checkpoint';
import { rng, rngFromState, seedFrom } from '../../../lib/runtime/seed';
import { OrderHeadError } from '../../../lib/runtime/errors';
import { resumeTraining, TrainingOutcome } from '../../../lib/runtime/train-loop';
import { MetricValues } from '../../../lib/runtime/run';

const OPTIM: OptimConfig = { steps: 12, batch: 8, lr: 0.05, warmup: 2, minLrRatio: 0.1, weightDecay: 0, betas: [0.9, 0.95], clipNorm: 1, seed: 3, evalEvery: 4 };
const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'oh-loop-'));

/**
 * y = x·w* with w* = [1, -2, 3]; the stage learns w from seeded batches and
 * validates on a fixed set. Its `train` is a stage's loop as every stage
 * writes it (with the joint tuning's stop rule, `stopAt`).
 */
function toyStage(dir: string, opts: { poison?: number; stopAt?: number; untilStep?: number; maxSteps?: number; onStep?: (step: number) => void } = {}) {
  const run = openRun({ root: path.dirname(dir), name: path.basename(dir), stage: 'toy', config: OPTIM, resume: true });
  const init = tf.zeros([3, 1]);
  const w = tf.variable(init, true);
  init.dispose();
  let r = rng(seedFrom(OPTIM.seed, 'toy'));
  const batch = (n: number, g = r) => {
    const x = Float32Array.from({ length: n * 3 }, () => g.normal());
    const y = Float32Array.from({ length: n }, (_, i) => x[i * 3] - 2 * x[i * 3 + 1] + 3 * x[i * 3 + 2]);
    return { x, y };
  };
  const val = batch(16, rng(7));
  const mse = (b: { x: Float32Array; y: Float32Array }) =>
    tf.mean(tf.square(tf.sub(tf.matMul(tf.tensor2d(b.x, [b.y.length, 3]), w), tf.tensor2d(b.y, [b.y.length, 1])))) as tf.Scalar;
  const train = (): TrainingOutcome => {
    const t = resumeTraining({
      run, stage: 'toy', configName: 'toy', optim: OPTIM, optimizer: AdamW.fromConfig({ w }, OPTIM), checkpointConfig: OPTIM, untilStep: opts.untilStep, maxSteps: opts.maxSteps,
      restore: (x) => { r = rngFromState(Number(x.rngState)); },
    });
    try {
      for (let step = t.step; step < t.until && t.stopReason === undefined; step++) {
        const lr = scheduledLr(OPTIM, step);
        const b = batch(OPTIM.batch);
        const { value, grads } = tf.variableGrads(() => mse(b), [w]);
        const loss = step + 1 === opts.poison ? NaN : value.dataSync()[0];
        value.dispose();
        const gradNorm = t.update(step, loss, { w: grads[w.name] }, lr);
        const s = step + 1;
        let row: MetricValues = { loss, lr, gradNorm };
        if (t.isEvalStep(s)) {
          const l = tf.tidy(() => mse(val));
          const e = { valLoss: l.dataSync()[0], step: s };
          l.dispose();
          t.keepBest(s, e.valLoss, () => [{ prefix: 'best', file: saveCheckpoint(run.checkpointDir, checkpointName('best', s), { weights: { w }, config: OPTIM, step: s }) }]);
          if (opts.stopAt !== undefined && s >= opts.stopAt) t.stop(`stopped at ${s}`);
          row = { ...row, ...e };
        }
        run.logMetrics(s, row);
        if (t.isCheckpointStep(s) || t.stopReason !== undefined) t.checkpoint(s, { extra: { rngState: r.state() } });
        opts.onStep?.(s);
      }
    } finally {
      t.dispose();
    }
    return t.outcome();
  };
  return { run, w, train, weights: () => Array.from(w.dataSync()), dispose: () => w.dispose() };
}

test('a run resumed from its checkpoints takes the same steps as an uninterrupted one, and logs each step once', async () => {
  await useWasm();
  const whole = toyStage(path.join(tmp(), 'whole'));
  const a = whole.train();
  const wA = whole.weights();
  whole.dispose();
  const dir = path.join(tmp(), 'sliced');
  for (const until of [4, 8, 12]) {
    const part = toyStage(dir, { untilStep: until });
    const o = part.train();
    assert.equal(o.step, until);
    // A call lists what it wrote; the run lists every resume checkpoint so far (what Stage 1 reports).
    assert.deepEqual(o.written.map((f) => path.basename(f)), [`${checkpointName('toy', until)}.safetensors`]);
    assert.deepEqual(part.run.checkpoints('toy').map((c) => c.step), [4, 8, 12].filter((s) => s <= until));
    if (until === 12) {
      assert.deepEqual(part.weights(), wA, 'resumed weights differ from the uninterrupted run');
      assert.deepEqual(o.best, a.best);
      const steps = part.run.readMetrics().map((m) => m.step);
      assert.deepEqual(steps, Array.from({ length: 12 }, (_, i) => i + 1));
    }
    part.dispose();
  }
  assert.ok(a.best && a.best.step > 0 && Number.isFinite(a.best.value));
  const bests = fs.readdirSync(path.join(dir, 'checkpoints')).filter((f) => f.startsWith('best-'));
  assert.equal(bests.length, 1, `one best checkpoint is kept (${bests.join(', ')})`);
  assert.equal(latestCheckpoint(path.join(dir, 'checkpoints'), 'best')?.step, a.best!.step);
});

test('an evaluation step writes the best checkpoint, then its metrics row, then the resume checkpoint', async () => {
  await useWasm();
  const dir = path.join(tmp(), 'order');
  const s = toyStage(dir, { untilStep: 4 });
  const files = () => (fs.existsSync(s.run.checkpointDir) ? fs.readdirSync(s.run.checkpointDir) : []);
  const atRow: string[][] = [];
  const log = s.run.logMetrics.bind(s.run);
  s.run.logMetrics = (step, values) => { if (step === 4) atRow.push(files()); log(step, values); };
  s.train();
  s.dispose();
  assert.deepEqual(atRow, [[`${checkpointName('best', 4)}.safetensors`]], 'at the row of step 4: the best checkpoint, no resume checkpoint yet');
  assert.ok(files().includes(`${checkpointName('toy', 4)}.safetensors`));
});

test('a non-finite loss stops before any update, names the step and the last good checkpoint, and leaks nothing', async () => {
  await useWasm();
  const dir = path.join(tmp(), 'nan');
  const good = toyStage(dir, { untilStep: 4 });
  good.train();
  good.dispose();
  const ck = latestCheckpoint(path.join(dir, 'checkpoints'), 'toy')!;
  const bytes = fs.readFileSync(ck.path);
  const before = tf.memory().numTensors;
  const bad = toyStage(dir, { poison: 6 });
  const w0 = bad.weights();
  assert.throws(() => bad.train(), (e: unknown) => e instanceof OrderHeadError && /loss is NaN at step 6/.test(e.message) &&
    e.message.includes(path.basename(ck.path)) && e.message.includes('toy.lr'));
  assert.notDeepEqual(bad.weights(), w0, 'step 5 ran');
  bad.dispose();
  assert.equal(tf.memory().numTensors, before, 'the failed run leaked tensors');
  assert.deepEqual(fs.readFileSync(ck.path), bytes, 'the last good checkpoint changed');
  assert.equal(latestCheckpoint(path.join(dir, 'checkpoints'), 'toy')?.step, 4);
});

test('the loop keeps tf.memory().numTensors flat over its steps', async () => {
  await useWasm();
  const dir = path.join(tmp(), 'leak');
  const first = toyStage(dir, { untilStep: 2 });
  first.train();
  first.dispose();
  const counts: number[] = [];
  const s = toyStage(dir, { onStep: () => counts.push(tf.memory().numTensors) });
  s.train();
  s.dispose();
  assert.equal(new Set(counts).size, 1, `tensor counts per step: ${counts.join(', ')}`);
});

test('a stop rule ends the run at that evaluation, and a resumed run stays stopped', async () => {
  await useWasm();
  const dir = path.join(tmp(), 'stop');
  const a = toyStage(dir, { stopAt: 8 });
  const o = a.train();
  a.dispose();
  assert.equal(o.step, 8);
  assert.equal(o.stopReason, 'stopped at 8');
  const b = toyStage(dir);
  const again = b.train();
  b.dispose();
  assert.equal(again.step, 8, 'a stopped run trained on');
  assert.equal(again.stopReason, 'stopped at 8');
});

test('OptimConfig validation names the field and the fix', () => {
  validateOptimConfig(OPTIM, 'toy');
  throwsOH(() => validateOptimConfig({ ...OPTIM, lr: Number.NaN }, 'toy'), 'toy.lr');
  throwsOH(() => validateOptimConfig({ ...OPTIM, betas: [0.9, 1] }, 'toy'), 'toy.betas');
  throwsOH(() => validateOptimConfig({ ...OPTIM, minLrRatio: 2 }, 'toy'), 'toy.minLrRatio');
  throwsOH(() => validateOptimConfig({ ...OPTIM, steps: 0 }, 'toy'), 'toy.steps');
  throwsOH(() => validateOptimConfig({ ...OPTIM, evalEvery: -1 }, 'toy'), 'toy.evalEvery');
});
