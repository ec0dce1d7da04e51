/**
 * Tensor leaks in every loop that runs for long: tf.memory().numTensors after
 * N iterations must equal its value after one. Each loop is observed from the
 * inside, through the hook it already has (onLog, onStep, onPart, onBlock,
 * onBatch), so the check covers the real loop code (checkpoint saves, dead-code
 * restarts, evaluations, KV-cache growth) and not a hand-written copy of a step.
 *
 * Related assertions elsewhere (not repeated here): hand-written training steps
 * (tests/tokenizer.test.ts 'a training step keeps tf.memory().numTensors flat',
 * tests/backbone.test.ts 'a training step on per-sample random orders ...'),
 * whole runs and failed runs (tests/tokenizer.test.ts, tests/stage1.test.ts),
 * the reference oracle scorer (tests/oracle.test.ts 'scoring leaks no
 * tensors'), refused checkpoint loads (tests/runtime.test.ts), and the
 * KV-cache size during decoding (tests/backbone.test.ts).
 */
import { after, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { useWasm } from './helpers';
import { rng } from '../lib/runtime/seed';
import { saveCheckpoint, checkpointName } from '../lib/runtime/checkpoint';
import { encodeSafetensors } from '../lib/runtime/safetensors';
import { blockGeometry, randomPolicy, rasterPolicy } from '../lib/order';
import { gptConfig, seqLen } from '../lib/backbone/config';
import { createGPT, disposeGPT, GPT } from '../lib/backbone/gpt';
import { exactNll } from '../lib/backbone/nll';
import { orderCells } from '../lib/backbone/order-nll';
import { sampleImages } from '../lib/backbone/sampler';
import { STAGE1_DEFAULTS, Stage1Config, stage1ModelConfig, trainStage1 } from '../lib/backbone/stage1';
import { tokenizerConfig, trainTokenizer } from '../lib/tokenizer';
import { TOKEN_CACHE_FORMAT } from '../lib/tokenizer/cache';
import { OracleItem, READINGS, scoreStates } from '../lib/oracle';
import { buildOracleDataset, oracleDatasetConfig } from '../lib/oracle/dataset';

const made: string[] = [];
after(() => { for (const d of made) fs.rmSync(d, { recursive: true, force: true }); });
function sandbox(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'oh-leaks-'));
  made.push(d);
  return d;
}

/** numTensors at each iteration (1-based), as reported by a loop's hook. */
function recorder(): { at: Map<number, number>; note: (i: number) => void } {
  const at = new Map<number, number>();
  return { at, note: (i) => at.set(i, tf.memory().numTensors) };
}

/** Every iteration's count equals the first one's (at least `n` iterations seen). */
function assertFlat(at: Map<number, number>, n: number, what: string): void {
  const keys = [...at.keys()].sort((a, b) => a - b);
  assert.ok(keys.length >= n, `${what}: only ${keys.length} iterations observed`);
  const first = at.get(keys[0])!;
  for (const k of keys) assert.equal(at.get(k), first, `${what}: ${at.get(k)! - first} tensor(s) more after iteration ${k} than after iteration ${keys[0]}`);
}

const CFG = gptConfig('tiny');
const GEO = blockGeometry({ gridH: CFG.gridH, gridW: CFG.gridW, blockH: 2, blockW: 2 });
const T = seqLen(CFG);

function tokens(n: number, seed: number): Int32Array {
  const r = rng(seed);
  return Int32Array.from({ length: n * T }, () => r.int(CFG.vocabSize));
}

test('tokenizer training: numTensors after 8 steps equals that after 1 (logging, dead-code restarts, evaluation and checkpoints included)', async () => {
  await useWasm();
  const cfg = tokenizerConfig('smoke', {
    codebookSize: 16, codeDim: 4, width: 8, depth: 1, batch: 4, steps: 8, warmup: 1, logEvery: 1, evalEvery: 3, evalImages: 2,
    checkpointEvery: 2, restartEvery: 2, deadAfter: 1,
  });
  const img = (n: number, k: number) => ({ images: Float32Array.from({ length: n * 1024 }, (_, i) => Math.sin(i * k) * 0.9), n });
  const rec = recorder();
  const res = await trainTokenizer({ config: cfg, runDir: path.join(sandbox(), 'tok'), train: img(8, 0.37), test: img(2, 0.11), onLog: (row) => rec.note(row.step) });
  res.tokenizer.dispose();
  assert.ok(res.restarts > 0, 'no dead code was restarted: the restart path went untested');
  assertFlat(rec.at, 8, 'tokenizer training');
});

test('Stage 1 training: numTensors after 8 steps equals that after 1 (checkpoints every 2 steps included)', async () => {
  await useWasm();
  const cfg: Stage1Config = { ...STAGE1_DEFAULTS, orderMode: 'block-rar', size: 'tiny', steps: 8, batch: 4, microBatch: 2, warmup: 1, checkpointEvery: 2, annealStart: 0.25, annealEnd: 0.75 };
  const model = stage1ModelConfig(cfg, { h: 4, w: 4 }, 16, 3);
  const n = 8;
  const rec = recorder();
  const res = trainStage1(sandbox(), 'leak', cfg, { tokens: tokens(n, 1), labels: Int32Array.from({ length: n }, (_, i) => i % 3), n }, model, { onStep: (s) => rec.note(s) });
  disposeGPT(res.model);
  assertFlat(rec.at, 8, 'Stage 1 training');
});

let model: GPT | null = null;
const tinyModel = (): GPT => (model ??= createGPT(CFG, 3));

function items(count: number, seed: number): OracleItem[] {
  const r = rng(seed);
  return Array.from({ length: count }, (_, i) => ({
    tokens: tokens(1, seed * 100 + i),
    classId: r.int(CFG.numClasses),
    visible: r.shuffle(Array.from({ length: GEO.numBlocks }, (_, b) => b)).slice(0, i % GEO.numBlocks),
  }));
}

for (const reading of READINGS) {
  test(`oracle scoring (${reading}): numTensors after 5 scoreStates calls equals that after 1`, async () => {
    await useWasm();
    const m = tinyModel();
    const rec = recorder();
    for (let k = 1; k <= 5; k++) {
      scoreStates(m, GEO, items(6, k), { reading, weight: k % 2 ? 'no-neighbours' : 'distance', batch: 3 + k });
      rec.note(k);
    }
    assertFlat(rec.at, 5, `scoreStates ${reading}`);
  });
}

test('oracle dataset build: numTensors after 4 parts equals that after 1 (both readings)', async () => {
  await useWasm();
  const root = sandbox();
  const m = tinyModel();
  const n = 4;
  const tok = tokens(n, 9), labels = Int32Array.from({ length: n }, (_, i) => i % 3);
  const tokDir = path.join(root, 'tokenizer-smoke');
  fs.mkdirSync(tokDir);
  fs.writeFileSync(path.join(tokDir, 'tokens.safetensors'), encodeSafetensors({
    'train.tokens': { dtype: 'I32', shape: [n, T], data: tok }, 'train.labels': { dtype: 'I32', shape: [n], data: labels },
    'test.tokens': { dtype: 'I32', shape: [n, T], data: tok }, 'test.labels': { dtype: 'I32', shape: [n], data: labels },
  }, { format: TOKEN_CACHE_FORMAT, grid: '{"h":4,"w":4}', codebook_size: '16', tokenizer_fingerprint: 't', tokenizer_step: '1', tokenizer_config: '{}', train_source: 's', test_source: 's' }));
  const backbone = saveCheckpoint(path.join(root, 'stage1', 'checkpoints'), checkpointName('stage1', 1, ['r1.00']), { weights: m.params, config: CFG, step: 1, kind: 'stage1', extra: { r: 1 } });
  const cfg = oracleDatasetConfig('smoke', { backbone, tokens: tokDir }, {
    images: 4, statesPerImage: 4, imagesPerPart: 1, statesPerCall: 3, compareEvery: 1, compare: [{ reading: 'one-step', weight: 'uniform' }],
  });
  const rec = recorder();
  await buildOracleDataset(path.join(root, 'ds'), cfg, { model: m, onPart: (p) => rec.note(p.part + 1) });
  assertFlat(rec.at, 4, 'oracle dataset build');
});

test('KV-cache sampling: numTensors is the same after every block and after 4 sampleImages calls as after 1', async () => {
  await useWasm();
  const m = tinyModel();
  const classes = new Int32Array([0, 1, 2]);
  const perCall = recorder();
  for (let k = 1; k <= 4; k++) {
    const inCall = recorder();
    await sampleImages(m, {
      classes, policy: k % 2 ? randomPolicy(GEO, k) : rasterPolicy(GEO), geometry: GEO, seed: k, topK: 4, topP: 0.9,
      cfgScale: k > 2 ? 1.5 : 1, onBlock: (done) => inCall.note(done),
    });
    assertFlat(inCall.at, GEO.numBlocks, `sampleImages call ${k}, block by block`);
    perCall.note(k);
  }
  assertFlat(perCall.at, 4, 'sampleImages calls');
});

test('exact NLL: numTensors after 4 batches equals that after 1, and after 3 calls as after 1', async () => {
  await useWasm();
  const m = tinyModel();
  const N = 8;
  const grids = tokens(N, 4), classes = Int32Array.from({ length: N }, (_, i) => i % (CFG.numClasses + 1));
  const perCall = recorder();
  for (let k = 1; k <= 3; k++) {
    const inCall = recorder();
    exactNll(m, grids, classes, orderCells(k === 2 ? 'raster' : 'random-blocks', GEO, N, k), 2, (done) => inCall.note(done));
    assertFlat(inCall.at, 4, `exactNll call ${k}, batch by batch`);
    perCall.note(k);
  }
  assertFlat(perCall.at, 3, 'exactNll calls');
});

test('teardown', () => { if (model) disposeGPT(model); model = null; });
