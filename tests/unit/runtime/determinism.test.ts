/**
 * Determinism: the same seed on the same backend gives the same numbers, byte
 * for byte, from Stage 1 training through the oracle labels to the NLL
 * metrics; a different seed gives different ones (so the equality is not
 * vacuous). Everything runs on wasm; runs are compared as raw Float32/Float64
 * bytes, never with a tolerance.
 *
 * The same for Stage 3 planner training (best weights and losses) and for
 * the evaluation of a setting driven by a trained planner (every metric,
 * per-sample value, sampled token and order).
 *
 * Related: tests/unit/oracle/dataset.test.ts ('determinism: the same config builds
 * the same states and labels') for a fixed backbone, tests/unit/backbone/stage1.test.ts and
 * tests/unit/tokenizer/tokenizer.test.ts for resume == uninterrupted, tests/unit/backbone/stage1.test.ts for
 * seeded sampling.
 */
import { after, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { useWasm } from '../../helpers';
import { rng } from '../../../lib/runtime/seed';
import { encodeSafetensors, readSafetensors, SafeTensor } from '../../../lib/runtime/safetensors';
import { blockGeometry } from '../../../lib/order';
import { gptConfig, seqLen } from '../../../lib/backbone/config';
import { createGPT, disposeGPT } from '../../../lib/backbone/gpt';
import { exactNll } from '../../../lib/backbone/nll';
import { checkpointNllTable, orderCells } from '../../../lib/backbone/order-nll';
import { selectedCheckpoint, STAGE1_DEFAULTS, Stage1Config, stage1ModelConfig, trainStage1, TokenData } from '../../../lib/backbone/stage1';
import { TOKEN_CACHE_FORMAT } from '../../../lib/tokenizer/cache';
import { OracleItem, READINGS, scoreStates, StateScore } from '../../../lib/oracle';
import { buildOracleDataset, mergeOracleDataset, ORACLE_DATASET_FILE, oracleDatasetConfig } from '../../../lib/oracle';
import { disposePlanner, Planner, PlannerTrainConfig, trainPlanner } from '../../../lib/planner';
import { evaluateSetting, isMissing, orderHeadSetting, SettingOutcome, SettingResult } from '../../../lib/eval';
import { decodeExact, encodeExact } from '../../../lib/eval/cache';
import { evalWorld, PJ_GEO, PJ_PLANNER, plannerJob } from '../../fixtures/planner-jobs';

const made: string[] = [];
after(() => { for (const d of made) fs.rmSync(d, { recursive: true, force: true }); });
function sandbox(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'oh-det-'));
  made.push(d);
  return d;
}

const bytes = (a: ArrayBufferView) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

/** All numbers of a list of scores as one buffer (u, u_extrap, l_j, L_rest, both labels). */
function scoreBytes(scores: StateScore[]): Buffer {
  return Buffer.concat(scores.flatMap((s) => [
    bytes(s.u), bytes(s.uExtrap), bytes(s.tokenLoss), bytes(new Float64Array([s.lRest])), bytes(new Int32Array([s.aStar, s.aStarExtrap])),
  ]));
}

/** Every tensor of a safetensors file as bytes, by name (metadata, which holds times, excluded). */
function tensorBytes(file: string): Record<string, Buffer> {
  const { tensors } = readSafetensors(file);
  return Object.fromEntries(Object.entries(tensors).map(([k, t]: [string, SafeTensor]) => [k, bytes(t.data)]));
}

function sameTensors(a: Record<string, Buffer>, b: Record<string, Buffer>, what: string): void {
  assert.deepEqual(Object.keys(a).sort(), Object.keys(b).sort(), `${what}: tensor names`);
  for (const k of Object.keys(a)) assert.ok(a[k].equals(b[k]), `${what}: tensor '${k}' differs`);
}

function differs(a: Record<string, Buffer>, b: Record<string, Buffer>, keys: string[], what: string): void {
  assert.ok(keys.some((k) => !a[k].equals(b[k])), `${what}: ${keys.join(', ')} are identical, the seed changed nothing`);
}

const CFG = gptConfig('tiny', { initStd: 0.3 });
const GEO = blockGeometry({ gridH: CFG.gridH, gridW: CFG.gridW, blockH: 2, blockW: 2 });
const T = seqLen(CFG);

function items(seed: number): OracleItem[] {
  const r = rng(seed);
  return Array.from({ length: 8 }, (_, i) => ({
    tokens: Int32Array.from({ length: T }, () => r.int(CFG.vocabSize)),
    classId: r.int(CFG.numClasses),
    visible: r.shuffle(Array.from({ length: GEO.numBlocks }, (_, b) => b)).slice(0, i % GEO.numBlocks),
  }));
}

for (const reading of READINGS) {
  test(`oracle labels (${reading}): two models from the same seed label the same states byte for byte; another seed differs`, async () => {
    await useWasm();
    const a = createGPT(CFG, 21), b = createGPT(CFG, 21), c = createGPT(CFG, 22);
    const states = items(4);
    const cfg = { reading, weight: 'no-neighbours' as const, batch: 5 };
    const sa = scoreBytes(scoreStates(a, GEO, states, cfg));
    assert.ok(sa.equals(scoreBytes(scoreStates(b, GEO, states, cfg))), 'same seed, different labels');
    assert.ok(sa.equals(scoreBytes(scoreStates(a, GEO, states, cfg))), 'same model scored twice, different labels');
    assert.ok(!sa.equals(scoreBytes(scoreStates(c, GEO, states, cfg))), 'another seed gave the same labels');
    [a, b, c].forEach(disposeGPT);
  });
}

test('exact NLL: same model seed and order seed give identical per-image and per-step NLL bytes; other seeds differ', async () => {
  await useWasm();
  const a = createGPT(CFG, 5), b = createGPT(CFG, 5), c = createGPT(CFG, 6);
  const N = 6, r = rng(8);
  const grids = Int32Array.from({ length: N * T }, () => r.int(CFG.vocabSize));
  const classes = Int32Array.from({ length: N }, (_, i) => i % CFG.numClasses);
  const run = (m = a, orderSeed = 1) => {
    const res = exactNll(m, grids, classes, orderCells('random-blocks', GEO, N, orderSeed), 4);
    return Buffer.concat([bytes(res.perImage), bytes(res.perStep), bytes(new Float64Array([res.natsPerToken, res.bitsPerToken]))]);
  };
  const ref = run();
  assert.ok(ref.equals(run(b)), 'same seed, different NLL');
  assert.ok(!ref.equals(run(c)), 'another model seed gave the same NLL');
  assert.ok(!ref.equals(run(a, 2)), 'another order seed gave the same NLL');
  [a, b, c].forEach(disposeGPT);
});

/** Train the tiny Stage 1 backbone with `seed`, build a tiny oracle dataset on it and the NLL table of its checkpoints. */
async function pipeline(root: string, seed: number, oracleSeed = 0): Promise<{ weights: Record<string, Buffer>; best: Record<string, Buffer>; labels: Record<string, Buffer>; nll: Buffer }> {
  // The regime on the 8 images: the oracle's 3 images are the planner's, 1 validation image, 4 training images (one batch).
  const cfg: Stage1Config = {
    ...STAGE1_DEFAULTS, orderMode: 'block-rar', size: 'tiny', steps: 4, batch: 4, microBatch: 2, warmup: 1, checkpointEvery: 2, evalEvery: 2, annealStart: 0.5, annealEnd: 1, seed,
    uniqueImages: 'all', validationImages: 1, plannerImages: 3,
  };
  const model = stage1ModelConfig(cfg, { h: 4, w: 4 }, 16, 3);
  const n = 8, r = rng(77);
  const data: TokenData = { tokens: Int32Array.from({ length: n * 16 }, () => r.int(16)), labels: Int32Array.from({ length: n }, (_, i) => i % 3), n, tokenizer: 'tok0' };
  const res = trainStage1(root, 'stage1', cfg, data, model);
  disposeGPT(res.model);
  const backbone = res.checkpoints[0]; // step 2, r = 1.00
  const tokDir = path.join(root, 'tokenizer-smoke');
  fs.mkdirSync(tokDir);
  fs.writeFileSync(path.join(tokDir, 'tokens.safetensors'), encodeSafetensors({
    'train.tokens': { dtype: 'I32', shape: [n, 16], data: data.tokens }, 'train.labels': { dtype: 'I32', shape: [n], data: data.labels },
    'test.tokens': { dtype: 'I32', shape: [n, 16], data: data.tokens }, 'test.labels': { dtype: 'I32', shape: [n], data: data.labels },
  }, { format: TOKEN_CACHE_FORMAT, grid: '{"h":4,"w":4}', codebook_size: '16', tokenizer_fingerprint: 'tok0', tokenizer_step: '1', tokenizer_config: '{}', train_source: 's', test_source: 's' }));
  const ds = path.join(root, 'oracle');
  await buildOracleDataset(ds, oracleDatasetConfig('smoke', { backbone, tokens: tokDir }, {
    images: 3, statesPerImage: 4, imagesPerPart: 2, statesPerCall: 3, compareEvery: 2, seed: oracleSeed,
    compare: [{ reading: 'one-step', weight: 'distance' }],
  }));
  mergeOracleDataset(ds);
  const rows = checkpointNllTable([{ model: 'block-rar', checkpoints: res.checkpoints }], GEO, data, n);
  const nll = Buffer.concat(rows.map((row) => bytes(new Float64Array([row.step, row.r, row.bits.raster, row.bits['block-raster'], row.bits['random-blocks'], row.gap]))));
  return {
    weights: tensorBytes(res.checkpoints[res.checkpoints.length - 1]), best: tensorBytes(selectedCheckpoint(res.run.dir)), labels: tensorBytes(path.join(ds, ORACLE_DATASET_FILE)), nll,
  };
}

test('Stage 1 -> oracle dataset -> NLL table: the same seed twice is identical byte for byte; another seed differs', async () => {
  await useWasm();
  const one = await pipeline(sandbox(), 0);
  const two = await pipeline(sandbox(), 0);
  sameTensors(one.weights, two.weights, 'Stage 1 checkpoint');
  sameTensors(one.best, two.best, 'Stage 1 validation-selected checkpoint');
  sameTensors(one.labels, two.labels, 'oracle dataset');
  assert.ok(one.nll.equals(two.nll), 'the NLL table differs');
  const other = await pipeline(sandbox(), 1);
  differs(one.weights, other.weights, ['tok_emb', 'head'], 'Stage 1 seed');
  differs(one.labels, other.labels, ['u', 'uExtrap', 'tokenLoss'], 'Stage 1 seed -> oracle labels');
  assert.ok(!one.nll.equals(other.nll), 'Stage 1 seed -> the NLL table is the same');
  // Another oracle seed (same backbone): other visible sets, so other labels.
  const states = await pipeline(sandbox(), 0, 5);
  sameTensors(one.weights, states.weights, 'Stage 1 checkpoint (oracle seed only changed)');
  differs(one.labels, states.labels, ['sequence', 'u'], 'oracle seed');
});

// ---------------------------------------------------------------------------
// Planner (Stage 3) and evaluation

/** Train the tiny Stage 3 job (9 steps) with `over` in a fresh folder: the best checkpoint's tensors and the metrics rows. */
function plannerRun(over: Partial<PlannerTrainConfig> = {}): { best: Record<string, Buffer>; rows: string; bestStep: number; planner: Planner } {
  const { cfg, data, grid } = plannerJob(9, over);
  const res = trainPlanner(sandbox(), 'stage3', cfg, data, grid);
  const rows = JSON.stringify(res.run.readMetrics().map((r) => ({ step: r.step, loss: r.loss, valLoss: r.valLoss, valTop1: r.valTop1 })));
  return { best: tensorBytes(res.bestPath), rows, bestStep: res.bestStep, planner: res.planner };
}

test('planner training (Stage 3): the same seeds twice give identical best weights and losses byte for byte; another batch seed or init seed differs', async () => {
  await useWasm();
  const one = plannerRun(), two = plannerRun();
  sameTensors(one.best, two.best, 'best planner');
  assert.equal(one.rows, two.rows, 'the losses differ');
  assert.equal(one.bestStep, two.bestStep);
  const batches = plannerRun({ seed: 1 });
  differs(one.best, batches.best, ['in.w', 'head.w'], 'planner.seed (batches)');
  assert.notEqual(one.rows, batches.rows);
  const init = plannerRun({ planner: { ...PJ_PLANNER, seed: 1 } });
  differs(one.best, init.best, ['in.w', 'head.w'], 'planner.planner.seed (init)');
  [one, two, batches, init].forEach((r) => disposePlanner(r.planner));
});

/** Every number of an outcome (metrics, per-sample values, tokens, orders, curve, trajectory), timings left out. */
function outcomeBytes(o: SettingOutcome): string {
  assert.ok(!isMissing(o));
  const r = o as SettingResult;
  return JSON.stringify(encodeExact({ metrics: r.metrics, curve: r.curve, seeds: r.seeds, trajectory: { ...r.trajectory, seconds: 0 } }));
}

test('evaluation of a trained planner\'s setting: the same eval seeds twice give identical metrics byte for byte; other eval seeds differ', async () => {
  await useWasm();
  const w = evalWorld();
  const trained = plannerRun();
  const setting = () => orderHeadSetting(w.backbone, trained.planner, PJ_GEO, 0);
  const a = outcomeBytes(await evaluateSetting(setting(), w.ctx, w.cfg));
  const b = outcomeBytes(await evaluateSetting(setting(), w.ctx, w.cfg));
  assert.ok(a === b, 'the same evaluation twice gave different numbers');
  // Other eval seeds draw other samples (classes and sampling streams); the NLL slices are by seed position, so NLL may stay.
  const other = await evaluateSetting(setting(), w.ctx, { ...w.cfg, seeds: [5, 6] }) as SettingResult;
  const ref = decodeExact(JSON.parse(a)) as SettingResult;
  assert.notEqual(other.metrics.fid.mean, ref.metrics.fid.mean, 'other eval seeds gave the same FID');
  assert.ok(!bytes(other.seeds[0].tokens).equals(bytes(ref.seeds[0].tokens)), 'other eval seeds sampled the same tokens');
  disposePlanner(trained.planner);
  w.dispose();
});
