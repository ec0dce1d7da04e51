/**
 * Bad input, across the project: a catalogue of what a user (or a crash) can
 * get wrong in the stages that exist (data, tokenizer, Stage 1 backbone,
 * Stage 2 oracle, Stages 3-6 planner / curriculum / joint tuning / router,
 * evaluation), one self-contained case per test, numbered.
 *
 * Every case asserts
 *   (a) an OrderHeadError whose message names the file or the config field and
 *       carries a fix (`expectOH` / `rejectsOH` below), and
 *   (b) that what was on disk before is still there, byte for byte, and nothing
 *       else appeared (no temp file, no half-made run folder): `untouched`
 *       hashes every file of the case's temp folder before and after.
 *
 * More variants of some cases live beside the code they test: tests/unit/data/idx.test.ts
 * (IDX corruptions), tests/unit/runtime/runtime.test.ts (safetensors decoding, atomic writes),
 * tests/unit/oracle/oracle.test.ts and tests/unit/oracle/dataset.test.ts (oracle refusals).
 */
import { after, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import * as tf from '@tensorflow/tfjs';
import { useWasm } from '../helpers';
import { OrderHeadError } from '../../lib/runtime/errors';
import { initBackend } from '../../lib/runtime/backend';
import { activeProfile } from '../../lib/runtime/profile';
import { openRun } from '../../lib/runtime/run';
import { latestCheckpoint, loadCheckpoint, saveCheckpoint } from '../../lib/runtime/checkpoint';
import { encodeSafetensors, readSafetensors } from '../../lib/runtime/safetensors';
import { rng } from '../../lib/runtime/seed';
import { readIdx, writeIdx } from '../../lib/data/idx';
import { loadIdxPair } from '../../lib/data/dataset';
import { blockGeometry } from '../../lib/order';
import { gptConfig, GPTConfig } from '../../lib/backbone/config';
import { createGPT, disposeGPT } from '../../lib/backbone/gpt';
import { exactNll } from '../../lib/backbone/nll';
import { loadBackbone, STAGE1_DEFAULTS, Stage1Config, stage1ModelConfig, trainStage1, TokenData } from '../../lib/backbone/stage1';
import { TokenizerConfig, loadTokenCache, loadTokenizer, tokenizeDataset, tokenizerConfig, trainTokenizer, VqTokenizer } from '../../lib/tokenizer';
import { TOKEN_CACHE_FORMAT } from '../../lib/tokenizer/cache';
import { buildOracleDataset, oracleDatasetConfig, OracleDatasetConfig } from '../../lib/oracle';
import { randomPhaseCheckpoint } from '../../lib/backbone/checkpoints';
import {
  bestPlannerCheckpoint, createPlanner, createRouter, disposePlanner, fixedBudgetPolicy, jointTuningConfig, LatentSteps, loadJointPair, loadPlanner,
  plannerPolicy, plannerTrainConfig, routerTrainConfig, trainJointTuning, trainLatentCurriculum, trainPlanner, trainRouter,
} from '../../lib/planner';
import { evaluateSettings, isMissing, MissingSetting, orderHeadSetting, settingOrMissing } from '../../lib/eval';
import { evalResultsTable, tableMarkdown } from '../../lib/eval/tables';
import { evalWorld, PJ_GEO, PJ_PLANNER, PJ_SHAPE, plannerJob, routerJob, tinyBackbone, tinyJointData } from '../fixtures/planner-jobs';

// Node's fs module itself (not the import wrapper), so a case can make one call fail.
const rawFs: typeof fs = require('node:fs');

// ---------------------------------------------------------------------------
// Helpers

const made: string[] = [];
after(() => { for (const d of made) fs.rmSync(d, { recursive: true, force: true }); });

/** A fresh temp folder, removed when the file's tests end. */
function sandbox(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'oh-bad-'));
  made.push(d);
  return d;
}

/** Every file and folder under `dir`: relative path -> sha256 of the bytes ('dir' for folders). */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const full = path.join(d, e.name), rel = path.relative(dir, full);
      if (e.isDirectory()) { out[rel] = 'dir'; walk(full); }
      else out[rel] = createHash('sha256').update(fs.readFileSync(full)).digest('hex');
    }
  };
  walk(dir);
  return out;
}

/**
 * Run `fn` (sync or async) and assert that `dir` is byte-identical afterwards,
 * with no file added or removed. `manifests` (relative paths) are run
 * manifests, the log of every (re)start of a run: a refused resume may append
 * one start to them, but every earlier entry must be kept as it was.
 */
async function untouched<T>(dir: string, fn: () => T | Promise<T>, manifests: string[] = []): Promise<T> {
  const before = snapshot(dir);
  const logs = manifests.map((m) => JSON.parse(fs.readFileSync(path.join(dir, m), 'utf8')) as { starts: unknown[] });
  const res = await fn();
  const after = snapshot(dir);
  manifests.forEach((m, i) => {
    const now = JSON.parse(fs.readFileSync(path.join(dir, m), 'utf8')) as { starts: unknown[] };
    assert.deepEqual({ ...now, starts: now.starts.slice(0, logs[i].starts.length) }, logs[i], `${m}: earlier entries changed`);
    assert.ok(now.starts.length <= logs[i].starts.length + 1, `${m}: more than one start added`);
    delete before[m];
    delete after[m];
  });
  assert.deepEqual(after, before, `files under ${dir} changed`);
  return res;
}

/** The error must be an OrderHeadError naming `where` (file or field) and every part, with a fix. */
function checkOH(err: unknown, where: string | RegExp, parts: Array<string | RegExp>): OrderHeadError {
  assert.ok(err instanceof OrderHeadError, `expected an OrderHeadError, got ${err instanceof Error ? err.stack : String(err)}`);
  if (typeof where === 'string') assert.ok(err.where.includes(where), `'where' is '${err.where}', expected it to name '${where}'`);
  else assert.match(err.where, where);
  assert.ok(err.fix.trim().length >= 10, `no fix given: ${err.message}`);
  assert.ok(err.message.includes('Fix: '), err.message);
  for (const p of parts) {
    if (typeof p === 'string') assert.ok(err.message.includes(p), `message lacks '${p}': ${err.message}`);
    else assert.match(err.message, p);
  }
  return err;
}

function expectOH(fn: () => unknown, where: string | RegExp, ...parts: Array<string | RegExp>): OrderHeadError {
  try {
    fn();
  } catch (err) {
    return checkOH(err, where, parts);
  }
  assert.fail(`expected an OrderHeadError naming ${where}, nothing was thrown`);
}

async function rejectsOH(fn: () => Promise<unknown>, where: string | RegExp, ...parts: Array<string | RegExp>): Promise<OrderHeadError> {
  try {
    await fn();
  } catch (err) {
    return checkOH(err, where, parts);
  }
  assert.fail(`expected an OrderHeadError naming ${where}, nothing was thrown`);
}

/** Run `fn` with environment variables set (undefined = unset), restoring them afterwards. */
async function withEnv<T>(vars: Record<string, string | undefined>, fn: () => T | Promise<T>): Promise<T> {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  const set = (v: Record<string, string | undefined>) => {
    for (const [k, x] of Object.entries(v)) { if (x === undefined) delete process.env[k]; else process.env[k] = x; }
  };
  set(vars);
  try {
    return await fn();
  } finally {
    set(saved);
  }
}

/** Bytes of deterministic pixels. */
const pixels = (n: number) => Uint8Array.from({ length: n }, (_, i) => (i * 37 + 11) % 256);

/** An images file of n 28x28 images and a labels file of m labels. */
function idxPair(dir: string, n: number, m = n): { images: string; labels: string } {
  const images = path.join(dir, 'train-images-idx3-ubyte.gz'), labels = path.join(dir, 'train-labels-idx1-ubyte.gz');
  writeIdx(images, [n, 28, 28], pixels(n * 28 * 28));
  writeIdx(labels, [m], Uint8Array.from({ length: m }, (_, i) => i % 10));
  return { images, labels };
}

/** A tiny Stage 1 job on a 4x4 grid of 16 codes (2x2 blocks): 2 steps, one r = 1.00 checkpoint. */
function tinyStage1(): { cfg: Stage1Config; model: GPTConfig; data: TokenData } {
  const cfg: Stage1Config = { ...STAGE1_DEFAULTS, orderMode: 'block-rar', size: 'tiny', steps: 2, batch: 4, microBatch: 2, warmup: 1, checkpointEvery: 2, annealStart: 1, annealEnd: 1 };
  const model = stage1ModelConfig(cfg, { h: 4, w: 4 }, 16, 3);
  const n = 8, r = rng(5);
  const tokens = Int32Array.from({ length: n * 16 }, () => r.int(16));
  const labels = Int32Array.from({ length: n }, (_, i) => i % 3);
  return { cfg, model, data: { tokens, labels, n, tokenizer: 'tok0' } };
}

/** Train the tiny Stage 1 job in `<root>/<name>`; returns its one checkpoint. */
function stage1Checkpoint(root: string, name = 'block-rar'): { file: string; runDir: string } & ReturnType<typeof tinyStage1> {
  const job = tinyStage1();
  const res = trainStage1(root, name, job.cfg, job.data, job.model);
  disposeGPT(res.model);
  return { file: res.checkpoints[res.checkpoints.length - 1], runDir: res.run.dir, ...job };
}

/** A token cache for the tiny Stage 1 data, as tokenizeDataset would write it. */
function tokenCache(dir: string, data: TokenData): string {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'tokens.safetensors'), encodeSafetensors({
    'train.tokens': { dtype: 'I32', shape: [data.n, 16], data: data.tokens },
    'train.labels': { dtype: 'I32', shape: [data.n], data: data.labels },
    'test.tokens': { dtype: 'I32', shape: [2, 16], data: data.tokens.slice(0, 32) },
    'test.labels': { dtype: 'I32', shape: [2], data: data.labels.slice(0, 2) },
  }, {
    format: TOKEN_CACHE_FORMAT, grid: JSON.stringify({ h: 4, w: 4 }), codebook_size: '16', tokenizer_fingerprint: data.tokenizer ?? '',
    tokenizer_step: '1', tokenizer_config: '{}', train_source: 'test', test_source: 'test',
  }));
  return dir;
}

/** A tiny oracle world: a Stage 1 run with a random-phase checkpoint and the matching token cache. */
function oracleWorld(root: string): { cfg: OracleDatasetConfig; runDir: string } {
  const s1 = stage1Checkpoint(path.join(root, 'stage1'));
  const tokens = tokenCache(path.join(root, 'tokenizer-smoke'), s1.data);
  const cfg = oracleDatasetConfig('smoke', { backbone: s1.file, tokens }, { images: 2, statesPerImage: 4, imagesPerPart: 1, statesPerCall: 4, compare: [] });
  return { cfg, runDir: s1.runDir };
}

/** A small tokenizer config on 32x32 images (8x8 tokens). */
function tinyTokenizer(over: Partial<TokenizerConfig> = {}): TokenizerConfig {
  return tokenizerConfig('smoke', {
    codebookSize: 16, codeDim: 4, width: 8, depth: 1, batch: 4, steps: 1, warmup: 1, logEvery: 1, evalEvery: 0, evalImages: 2,
    checkpointEvery: 1, restartEvery: 0, ...over,
  });
}

const blankImages = (n: number) => ({ images: Float32Array.from({ length: n * 1024 }, (_, i) => ((i * 7) % 13) / 6.5 - 1), n });

/** An Error like the one Node throws when the disk is full. */
const enospc = () => Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });

const tmpFiles = (dir: string) => Object.keys(snapshot(dir)).filter((f) => f.includes('.tmp-'));

// ---------------------------------------------------------------------------
// Data: IDX files and datasets

test('case 1: a corrupt idx.gz file (flipped bytes in the gzip stream) names the file and says to replace it', async () => {
  const dir = sandbox();
  const { images, labels } = idxPair(dir, 4);
  const gz = fs.readFileSync(images);
  for (let i = 12; i < gz.length - 8; i += 5) gz[i] ^= 0x5a;
  fs.writeFileSync(images, gz);
  await untouched(dir, () => {
    expectOH(() => readIdx(images), images, 'corrupt gzip', 'replace it');
    expectOH(() => loadIdxPair(images, labels), images, 'corrupt gzip');
  });
});

test('case 2: a truncated idx file (cut mid-data, plain and gzip) names the file and the missing bytes', async () => {
  const dir = sandbox();
  const plain = path.join(dir, 'images.idx');
  writeIdx(plain, [3, 28, 28], pixels(3 * 28 * 28));
  const bytes = fs.readFileSync(plain);
  fs.writeFileSync(plain, bytes.subarray(0, bytes.length - 100));
  const gz = path.join(dir, 'images.idx.gz');
  fs.writeFileSync(gz, zlib.gzipSync(bytes.subarray(0, 10)));
  const cut = path.join(dir, 'cut.idx.gz');
  const whole = zlib.gzipSync(bytes);
  fs.writeFileSync(cut, whole.subarray(0, whole.length >> 1));
  await untouched(dir, () => {
    expectOH(() => readIdx(plain), plain, 'truncated data', 'only 2252 are there', 'complete copy');
    expectOH(() => readIdx(gz), gz, 'truncated header');
    expectOH(() => readIdx(cut), cut, /corrupt gzip|truncated/);
  });
});

test('case 3: a wrong-magic file (a PNG and a text file renamed to .idx) is not read as images', async () => {
  const dir = sandbox();
  const png = path.join(dir, 'train-images-idx3-ubyte');
  fs.writeFileSync(png, Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13]));
  const text = path.join(dir, 'labels.idx');
  fs.writeFileSync(text, '\0\0\x07\x01 not an idx file');
  await untouched(dir, () => {
    expectOH(() => readIdx(png), png, 'not an IDX file', 'magic bytes 89 50 4e 47', 'expected 00 00 08');
    expectOH(() => readIdx(text), text, 'unknown type code 0x07');
  });
});

test('case 4: an images file and a labels file of different counts name both files and the split fix', async () => {
  const dir = sandbox();
  const { images, labels } = idxPair(dir, 5, 4);
  await untouched(dir, () => {
    expectOH(() => loadIdxPair(images, labels), labels, 'holds 4 labels', `images file ${images} holds 5 images`, 'same split');
  });
});

test('case 5: an empty dataset (an idx file of 0 images) is refused instead of training on nothing', async () => {
  const dir = sandbox();
  const { images, labels } = idxPair(dir, 0);
  const empty = path.join(dir, 'empty.idx');
  fs.writeFileSync(empty, '');
  await untouched(dir, () => {
    expectOH(() => loadIdxPair(images, labels), images, 'holds no images', 'non-empty images file');
    expectOH(() => readIdx(empty), empty, 'empty (0 bytes)');
  });
});

// ---------------------------------------------------------------------------
// Tokenizer (Stage 0)

test('case 6: tokenizer training on an empty or misaligned image set is refused before a run folder is made', async () => {
  await useWasm();
  const root = sandbox();
  const cfg = tinyTokenizer();
  await untouched(root, async () => {
    await rejectsOH(() => trainTokenizer({ config: cfg, runDir: path.join(root, 'tok'), train: { images: new Float32Array(0), n: 0 }, test: blankImages(2) }),
      'trainTokenizer(train)', 'holds no images');
    await rejectsOH(() => trainTokenizer({ config: cfg, runDir: path.join(root, 'tok'), train: blankImages(4), test: { images: new Float32Array(0), n: 0 } }),
      'trainTokenizer(test)', 'holds no images');
    // 28x28 images given to a 32x32 tokenizer (forgot the padding).
    await rejectsOH(() => trainTokenizer({ config: cfg, runDir: path.join(root, 'tok'), train: { images: new Float32Array(4 * 784), n: 4 }, test: blankImages(2) }),
      'trainTokenizer(train)', '3136 pixels for 4 images', 'need 4096', 'pad: 32');
  });
});

test('case 7: a tokenizer patch size that does not tile the image names tokenizer.patchSize', async () => {
  const root = sandbox();
  await untouched(root, () => {
    expectOH(() => tinyTokenizer({ patchSize: 5 }), 'tokenizer.patchSize', 'not a multiple of patchSize 5', 'divides the image size');
    expectOH(() => tinyTokenizer({ batch: 10, microBatch: 3 }), 'tokenizer.microBatch');
  });
});

test('case 8: a tokenizer checkpoint from another config names each differing field with both values', async () => {
  await useWasm();
  const root = sandbox();
  const cfg = tinyTokenizer();
  const a = await trainTokenizer({ config: cfg, runDir: path.join(root, 'a'), train: blankImages(4), test: blankImages(2) });
  a.tokenizer.dispose();
  const before = tf.memory().numTensors;
  await untouched(root, async () => {
    expectOH(() => loadTokenizer(path.join(root, 'a'), { expectConfig: { ...cfg, codebookSize: 32, width: 12 } }), a.checkpoint,
      'codebookSize: checkpoint 16, current 32', 'width: checkpoint 8, current 12', 'retrain');
    // The same run folder reopened with another config.
    await rejectsOH(() => trainTokenizer({ config: { ...cfg, codeDim: 8 }, runDir: path.join(root, 'a'), train: blankImages(4), test: blankImages(2) }),
      path.join(root, 'a'), 'codeDim: run 4, current 8', 'never mixed');
  });
  assert.equal(tf.memory().numTensors, before, 'a refused load leaked tensors');
});

test('case 9: a Stage 1 checkpoint, or a run folder without checkpoints, given as the tokenizer', async () => {
  await useWasm();
  const root = sandbox();
  const s1 = stage1Checkpoint(root);
  fs.mkdirSync(path.join(root, 'tokenizer-smoke'));
  await untouched(root, () => {
    expectOH(() => loadTokenizer(s1.file), s1.file, "is a 'stage1' checkpoint, not a tokenizer checkpoint");
    expectOH(() => loadTokenizer(path.join(root, 'tokenizer-smoke')), path.join(root, 'tokenizer-smoke', 'checkpoints'), 'no tokenizer checkpoint', '01_tokenizer');
  });
});

test('case 10: loading a token cache from a folder without tokens (tokenizer not run yet) names notebook 01', async () => {
  const root = sandbox();
  const dir = path.join(root, 'tokenizer-smoke');
  fs.mkdirSync(dir);
  await untouched(root, () => {
    expectOH(() => loadTokenCache(dir), path.join(dir, 'tokens.safetensors'), 'no token cache here', '01_tokenizer');
  });
});

test('case 11: a truncated or corrupt token cache says to rebuild it (not to "use an earlier checkpoint")', async () => {
  await useWasm();
  const root = sandbox();
  const tok = VqTokenizer.init(tinyTokenizer());
  const dir = path.join(root, 'tokenizer-smoke');
  await tokenizeDataset(tok, dir, { train: { ...blankImages(3), labels: new Int32Array(3) }, test: { ...blankImages(2), labels: new Int32Array(2) } });
  tok.dispose();
  const file = path.join(dir, 'tokens.safetensors');
  const bytes = fs.readFileSync(file);
  fs.writeFileSync(file, bytes.subarray(0, bytes.length - 9));
  await untouched(root, () => {
    const e = expectOH(() => loadTokenCache(dir), file, 'truncated', 'rebuild it with tokenizeDataset');
    assert.ok(!e.fix.includes('checkpoint'), e.fix);
  });
  fs.writeFileSync(file, 'this is not a safetensors file at all');
  await untouched(root, () => expectOH(() => loadTokenCache(dir), file, 'not a safetensors file', 'rebuild'));
  // A checkpoint put where the cache belongs.
  saveCheckpoint(dir, 'x', { weights: { w: new Float32Array(2) }, config: {}, step: 0 });
  fs.renameSync(path.join(dir, 'x.safetensors'), file);
  await untouched(root, () => expectOH(() => loadTokenCache(dir), file, 'not a token cache', 'rebuild'));
});

// ---------------------------------------------------------------------------
// Weights and checkpoints

test('case 12: a truncated weights file (safetensors cut short) is refused, naming the file', async () => {
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

test('case 13: a corrupt weights file (garbage over the header, or a tensor with a wrong shape) is refused', async () => {
  await useWasm();
  const root = sandbox();
  const { file, model } = stage1Checkpoint(root);
  const bytes = fs.readFileSync(file);
  const garbled = path.join(root, 'garbled.safetensors');
  const g = Buffer.from(bytes);
  g.fill(0x7b, 8, 40); // '{{{{...' over the start of the JSON header
  fs.writeFileSync(garbled, g);
  // A well-formed file whose tok_emb has the wrong shape for its config.
  const { tensors, metadata } = readSafetensors(file);
  const wrong = path.join(root, 'wrong-shape.safetensors');
  fs.writeFileSync(wrong, encodeSafetensors({ ...tensors, tok_emb: { dtype: 'F32', shape: [3, 3], data: new Float32Array(9) } }, metadata));
  const lacking = path.join(root, 'lacking.safetensors');
  const { tok_emb: _drop, ...rest } = tensors;
  fs.writeFileSync(lacking, encodeSafetensors(rest, metadata));
  const before = tf.memory().numTensors;
  await untouched(root, () => {
    expectOH(() => loadBackbone(garbled), garbled, 'not valid JSON');
    expectOH(() => loadBackbone(lacking), lacking, 'lacks weight tok_emb');
    expectOH(() => loadBackbone(wrong), wrong, "weight 'tok_emb' has shape [3,3]", `needs [${model.vocabSize},${model.dModel}]`);
  });
  assert.equal(tf.memory().numTensors, before, 'a refused load leaked tensors');
});

test('case 14: weights containing NaN are refused on load, naming the tensor (and so is resuming from them)', async () => {
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

test('case 15: a Stage 1 checkpoint from another config names the field, on load and on resume', async () => {
  await useWasm();
  const root = sandbox();
  const s1 = stage1Checkpoint(root, 'a');
  // Another run (dModel 32) whose checkpoints/ received the dModel-16 checkpoint by mistake.
  const bigger = gptConfig('tiny', { gridH: 4, gridW: 4, vocabSize: 16, numClasses: 3, dModel: 32 });
  const bDir = openRun({ root, stage: 'stage1', name: 'b', config: { stage1: s1.cfg, model: bigger, data: { n: s1.data.n, tokenizer: 'tok0' } } }).dir;
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

test('case 16: a torn run config.json (killed editor, bad merge) is refused, naming it', async () => {
  await useWasm();
  const root = sandbox();
  const s1 = stage1Checkpoint(root);
  const cfgFile = path.join(s1.runDir, 'config.json');
  fs.writeFileSync(cfgFile, fs.readFileSync(cfgFile, 'utf8').slice(0, 40));
  await untouched(root, () => {
    expectOH(() => trainStage1(root, 'block-rar', s1.cfg, s1.data, s1.model), cfgFile, 'cannot read the run config', 'delete the file');
  });
});

// ---------------------------------------------------------------------------
// Environment: profile and backend

test('case 17: an invalid ORDERHEAD_PROFILE lists the valid names and creates no run folder', async () => {
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

test('case 18: an invalid ORDERHEAD_BACKEND lists the valid names (the active backend is kept)', async () => {
  await useWasm();
  const root = sandbox();
  await withEnv({ ORDERHEAD_BACKEND: 'gpu' }, async () => {
    await untouched(root, async () => {
      await rejectsOH(() => initBackend(), 'ORDERHEAD_BACKEND', "unknown value 'gpu'", 'auto, tensorflow-gpu, tensorflow, wasm, cpu');
    });
  });
  assert.equal(tf.getBackend(), 'wasm');
  // The oracle CLI reports it as one line and exit code 2, not a stack trace, before making the dataset folder.
  await untouched(root, () => {
    const cli = spawnSync(process.execPath, [path.join(__dirname, '..', '..', 'lib', 'oracle', 'cli.js'), 'build', '--run', path.join(root, 'ds'),
      '--backbone', path.join(root, 'b.safetensors'), '--tokens', root], { encoding: 'utf8', env: { ...process.env, ORDERHEAD_BACKEND: 'gpu', ORDERHEAD_PROFILE: 'smoke' }, timeout: 60_000 });
    assert.equal(cli.status, 2, cli.stderr);
    assert.match(cli.stderr, /^error: ORDERHEAD_BACKEND: unknown value 'gpu'\. Fix: use one of: auto, /m);
    assert.ok(!/\n\s+at /.test(cli.stderr), `a stack trace was printed: ${cli.stderr}`);
  });
});

// ---------------------------------------------------------------------------
// Stage 1 (backbone)

test('case 19: a block size that does not tile the token grid names order.blockSize and the divisors', async () => {
  await useWasm();
  const root = sandbox();
  const job = tinyStage1();
  await untouched(root, () => {
    expectOH(() => blockGeometry({ gridH: 8, gridW: 8, blockH: 3, blockW: 2 }), 'order.blockSize', 'does not tile the 8x8 token grid', '1, 2, 4, 8');
    expectOH(() => trainStage1(root, 'bad', { ...job.cfg, blockH: 3 }, job.data, job.model), 'order.blockSize', 'blockH 3');
    expectOH(() => blockGeometry({ gridH: 4, gridW: 4, blockH: 0, blockW: 2 }), 'order.blockSize', 'positive integers');
  });
});

test('case 20: Stage 1 on an empty token set, or labels that do not match the tokens, is refused before a run folder is made', async () => {
  await useWasm();
  const root = sandbox();
  const { cfg, model, data } = tinyStage1();
  await untouched(root, () => {
    expectOH(() => trainStage1(root, 'x', cfg, { tokens: new Int32Array(0), labels: new Int32Array(0), n: 0 }, model), 'stage1 token data', 'holds no images');
    expectOH(() => trainStage1(root, 'x', cfg, { ...data, labels: data.labels.slice(1) }, model), 'stage1 token data', `${data.n - 1} labels for ${data.n} images`);
  });
});

test('case 21: token ids outside the vocabulary (tokens of another tokenizer) name the image and cell, not "GatherV2"', async () => {
  await useWasm();
  const root = sandbox();
  const { cfg, model, data } = tinyStage1();
  const alien = Int32Array.from(data.tokens);
  alien[2 * 16 + 5] = 300;
  const badLabels = Int32Array.from(data.labels);
  badLabels[4] = 7;
  await untouched(root, () => {
    expectOH(() => trainStage1(root, 'x', cfg, { ...data, tokens: alien }, model), 'stage1 token data', 'token 300 of image 2 (cell 5)', 'vocabSize');
    expectOH(() => trainStage1(root, 'x', cfg, { ...data, labels: badLabels }, model), 'stage1 token data', 'class 7 of image 4', 'numClasses 3');
  });
});

test('case 22: exact NLL of out-of-vocabulary tokens, a broken order or no images is refused', async () => {
  await useWasm();
  const root = sandbox();
  const { model } = tinyStage1();
  const m = createGPT(model, 1);
  const N = 2, T = 16;
  const grids = new Int32Array(N * T).map((_, i) => i % 16), classes = new Int32Array([0, 1]);
  const raster = new Int32Array(N * T).map((_, i) => i % T);
  const twice = Int32Array.from(raster);
  twice[T + 3] = 2;
  const before = tf.memory().numTensors;
  await untouched(root, () => {
    expectOH(() => exactNll(m, grids.map((v) => v + 16), classes, raster), 'exactNll(grids, classes)', 'token 16 of image 0', 'vocabulary 0 .. 15');
    expectOH(() => exactNll(m, grids, classes, twice), 'exactNll(cells)', 'order of image 1 is not a permutation', 'cell 2, already decoded');
    expectOH(() => exactNll(m, new Int32Array(0), new Int32Array(0), new Int32Array(0)), 'exactNll', 'no images');
    expectOH(() => exactNll(m, grids, classes, raster.subarray(1)), 'exactNll', 'N*T cells');
  });
  assert.equal(tf.memory().numTensors, before);
  disposeGPT(m);
});

test('case 23: out of disk while Stage 1 writes a checkpoint: error names the file, the previous checkpoint is byte-identical, no temp file, no leak', async () => {
  await useWasm();
  const root = sandbox();
  const job = tinyStage1();
  const cfg = { ...job.cfg, steps: 4 };
  const first = trainStage1(root, 'full', cfg, job.data, job.model, { maxSteps: 2 });
  disposeGPT(first.model);
  const good = first.checkpoints[0];
  const ckDir = path.dirname(good);
  const before = snapshot(ckDir);
  const tensors = tf.memory().numTensors;
  // Every write to a temp file fails as on a full disk, from step 4's save on (onStep runs after a step's checkpoint, so the disk fills after step 3).
  const realOpen = rawFs.openSync, realWrite = rawFs.writeSync;
  const tempFds = new Set<number>();
  let full = false;
  (rawFs as { openSync: unknown }).openSync = (...args: Parameters<typeof fs.openSync>) => {
    const fd = realOpen(...args);
    if (String(args[0]).includes('.tmp-')) tempFds.add(fd);
    return fd;
  };
  (rawFs as { writeSync: unknown }).writeSync = (fd: number, ...rest: unknown[]) => {
    if (full && tempFds.has(fd)) throw enospc();
    return (realWrite as (...a: unknown[]) => number)(fd, ...rest);
  };
  try {
    expectOH(() => trainStage1(root, 'full', cfg, job.data, job.model, { onStep: (s) => { if (s === 3) full = true; } }),
      path.join(ckDir, 'stage1-step000004-r1.00.safetensors'), 'no space left on the device', 'previous file, if any, is unchanged', 'free disk space');
  } finally {
    (rawFs as { openSync: unknown }).openSync = realOpen;
    (rawFs as { writeSync: unknown }).writeSync = realWrite;
  }
  assert.deepEqual(snapshot(ckDir), before, 'the checkpoints folder changed');
  assert.deepEqual(tmpFiles(root), [], 'a temp file was left behind');
  assert.equal(tf.memory().numTensors, tensors, 'the failed run leaked tensors');
  // With space again, the run resumes from the good checkpoint and finishes.
  const done = trainStage1(root, 'full', cfg, job.data, job.model);
  assert.equal(done.steps, 4);
  disposeGPT(done.model);
});

test('case 24: out of disk on an injected write failure in saveCheckpoint: the old file stays byte-identical', async () => {
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

// ---------------------------------------------------------------------------
// Stage 2 (oracle dataset)

test('case 25: an invalid shard spec is refused with the valid form, before the dataset folder is made', async () => {
  await useWasm();
  const root = sandbox();
  const { cfg } = oracleWorld(root);
  await untouched(root, async () => {
    for (const bad of ['2/2', '0/0', 'a/b', '-1/2', '1.5/2']) {
      await rejectsOH(() => buildOracleDataset(path.join(root, 'ds'), cfg, { shard: bad }), 'oracle shard', `invalid shard '${bad}'`, 'i/N');
    }
  });
});

test('case 26: an oracle build without a Stage 1 checkpoint (empty run folder, only annealed ones, a missing file) names notebook 02', async () => {
  await useWasm();
  const root = sandbox();
  const { cfg, runDir } = oracleWorld(root);
  const empty = path.join(root, 'stage1', 'not-trained');
  fs.mkdirSync(empty);
  const annealed = path.join(root, 'stage1', 'annealed');
  fs.mkdirSync(path.join(annealed, 'checkpoints'), { recursive: true });
  fs.copyFileSync(cfg.backbone, path.join(annealed, 'checkpoints', 'stage1-step000010-r0.00.safetensors'));
  await untouched(root, async () => {
    expectOH(() => randomPhaseCheckpoint(empty), path.join(empty, 'checkpoints'), 'no Stage 1 checkpoints here', '02_stage1_backbone');
    expectOH(() => randomPhaseCheckpoint(annealed), path.join(annealed, 'checkpoints'), 'no random-phase (r = 1.00) checkpoint', 'newest: stage1-step000010-r0.00');
    const missing = path.join(runDir, 'checkpoints', 'stage1-step000099-r1.00.safetensors');
    await rejectsOH(() => buildOracleDataset(path.join(root, 'ds'), { ...cfg, backbone: missing }), missing, 'does not exist', '02_stage1_backbone');
  });
});

test('case 27: an oracle build from a folder without a token cache names notebook 01', async () => {
  await useWasm();
  const root = sandbox();
  const { cfg } = oracleWorld(root);
  const noTokens = path.join(root, 'tokenizer-default');
  fs.mkdirSync(noTokens);
  await untouched(root, async () => {
    await rejectsOH(() => buildOracleDataset(path.join(root, 'ds'), { ...cfg, tokens: noTokens }), path.join(noTokens, 'tokens.safetensors'), 'no token cache', '01_tokenizer');
  });
});

test('case 28: an oracle build given a tokenizer checkpoint as its backbone, or a block size the backbone was not trained on', async () => {
  await useWasm();
  const root = sandbox();
  const { cfg } = oracleWorld(root);
  const tokCk = saveCheckpoint(path.join(root, 'tok'), 'tokenizer-step000001', { weights: { w: new Float32Array(2) }, config: { imageSize: 32 }, step: 1 });
  await untouched(root, async () => {
    await rejectsOH(() => buildOracleDataset(path.join(root, 'ds'), { ...cfg, backbone: tokCk }), tokCk, 'not a backbone checkpoint', 'stage1-step*');
    await rejectsOH(() => buildOracleDataset(path.join(root, 'ds'), { ...cfg, blockH: 1 }), 'oracle.blockH', 'trained on 2x2-token blocks', 'set blockH: 2');
    await rejectsOH(() => buildOracleDataset(path.join(root, 'ds'), { ...cfg, blockH: 3 }), 'order.blockSize', 'does not tile');
  });
});

test('case 29: a damaged part file met on resume names the part and says to delete it (not "use an earlier checkpoint")', async () => {
  await useWasm();
  const root = sandbox();
  const { cfg } = oracleWorld(root);
  const ds = path.join(root, 'ds');
  await buildOracleDataset(ds, cfg, { maxParts: 1 });
  const part = path.join(ds, fs.readdirSync(ds).find((f) => f.startsWith('part-'))!);
  const bytes = fs.readFileSync(part);
  fs.writeFileSync(part, bytes.subarray(0, bytes.length - 7));
  await untouched(root, async () => {
    const e = await rejectsOH(() => buildOracleDataset(ds, cfg), part, 'truncated', 'delete this part file');
    assert.ok(!e.fix.includes('checkpoint'), e.fix);
  });
});

test('case 30: an oracle dataset folder reopened with another config names each differing field', async () => {
  await useWasm();
  const root = sandbox();
  const { cfg } = oracleWorld(root);
  const ds = path.join(root, 'ds');
  await buildOracleDataset(ds, cfg, { maxParts: 1 });
  await untouched(root, async () => {
    await rejectsOH(() => buildOracleDataset(ds, { ...cfg, seed: 3, statesPerImage: 8 }), ds, 'seed: dataset 0, current 3', 'statesPerImage: dataset 4, current 8', 'never mixed');
  });
});

// ---------------------------------------------------------------------------
// Stages 3-6 (planner, latent curriculum, joint tuning, router)

/** A tiny Stage 3 run (6 steps; best and planner checkpoints every 3) in `<root>/<name>`. */
function plannerRun(root: string, name = 'stage3-u_extrap-hard'): ReturnType<typeof plannerJob> & { runDir: string; best: string; last: string } {
  const job = plannerJob(6);
  const res = trainPlanner(root, name, job.cfg, job.data, job.grid);
  disposePlanner(res.planner);
  return { ...job, runDir: res.run.dir, best: res.bestPath, last: latestCheckpoint(res.run.checkpointDir, 'planner')!.path };
}

test('case 31: a planner checkpoint used with another backbone (fingerprint) or block grid names the field and says to retrain Stage 3', async () => {
  await useWasm();
  const root = sandbox();
  const p = plannerRun(root);
  const m = tinyBackbone();
  const pl = loadPlanner(p.best).planner;
  const otherGrid = blockGeometry({ gridH: 4, gridW: 4, blockH: 1, blockW: 2 }); // 4x2 = 8 blocks
  const before = tf.memory().numTensors;
  await untouched(root, () => {
    expectOH(() => loadPlanner(p.best, { backboneFingerprint: 'another-backbone' }), `${p.best} (backboneFingerprint)`,
      'trained on backbone test-backbone, not on another-backbone', 'retrain Stage 3');
    expectOH(() => loadPlanner(p.best, { shape: { numBlocks: 8, blocksY: 4 } }), `${p.best} (shape.numBlocks)`, 'numBlocks = 4, here it is 8', '04_stage3_orderhead');
    expectOH(() => plannerPolicy(pl, m, otherGrid), "policy 'orderhead R=0'", 'trained for 2x2 blocks of a 16-wide backbone', 'here: 4x2 blocks');
    expectOH(() => orderHeadSetting(m, pl, otherGrid, 0), "policy 'orderhead R=0'", 'here: 4x2 blocks');
    // Resuming the run on another backbone's features: refused before a step, naming the field with both values.
    expectOH(() => trainPlanner(root, 'stage3-u_extrap-hard', p.cfg, { ...p.data, backboneFingerprint: 'another-backbone' }, p.grid), p.runDir,
      'backboneFingerprint: run "test-backbone", current "another-backbone"', 'never mixed');
    // A block grid that does not hold the features' blocks: refused before a run folder is made.
    expectOH(() => trainPlanner(root, 'wrong-grid', p.cfg, p.data, { ...p.grid, blocksX: 4 }), 'trainPlanner(grid)', 'grid 2x4 does not hold 4 blocks', 'ds.geo');
    // Stage 5 given a planner of another grid.
    const pl8 = createPlanner(PJ_PLANNER, { ...PJ_SHAPE, numBlocks: 8, blocksY: 4 });
    expectOH(() => trainJointTuning(root, 'joint', jointTuningConfig('smoke', { heldOutEvery: 4, driftImages: 4 }), tinyJointData(), m, pl8),
      'trainJointTuning(planner)', 'built for 8 blocks', 'trained on this backbone and block grid');
    disposePlanner(pl8);
  });
  assert.equal(tf.memory().numTensors, before, 'a refused load or resume leaked tensors');
  disposePlanner(pl);
  disposeGPT(m);
});

test('case 32: R outside {0, 1, 2, 4} is refused with the valid values, before a run folder or a sampling step', async () => {
  await useWasm();
  const root = sandbox();
  const p = plannerRun(root);
  const m = tinyBackbone();
  const pl = loadPlanner(p.best).planner;
  const before = tf.memory().numTensors;
  await untouched(root, () => {
    const bad = { ...PJ_PLANNER, latentSteps: 3 as LatentSteps };
    expectOH(() => plannerTrainConfig('smoke', { planner: bad }), 'planner.latentSteps', 'R = 3 latent steps is not supported', 'use one of: 0, 1, 2, 4');
    expectOH(() => trainPlanner(root, 'r3', { ...p.cfg, planner: bad }, p.data, p.grid), 'planner.latentSteps', '0, 1, 2, 4');
    expectOH(() => loadPlanner(p.best, { latentSteps: 5 as LatentSteps }), `${p.best} (latentSteps)`, 'R = 5');
    expectOH(() => orderHeadSetting(m, pl, PJ_GEO, 3 as LatentSteps), "policy 'orderhead R=3' (R)", 'R = 3', '0, 1, 2, 4');
    expectOH(() => fixedBudgetPolicy(pl, m, PJ_GEO, 2, 8 as LatentSteps), "policy 'orderhead R=8 top-2' (R)", '0, 1, 2, 4');
    expectOH(() => routerTrainConfig('smoke', { latentSteps: 3 as LatentSteps }), 'router.latentSteps', '0, 1, 2, 4');
    // The R curriculum checks every R before its first stage trains: no R = 1 run folder appears for [1, 3].
    expectOH(() => trainLatentCurriculum(root, 'stage4', p.cfg, p.data, p.grid, pl, [1, 3 as LatentSteps]), 'trainLatentCurriculum(latentSteps)', 'R = 3', '0, 1, 2, 4');
  });
  assert.equal(tf.memory().numTensors, before);
  disposePlanner(pl);
  disposeGPT(m);
});

test('case 33: an invalid budget set (no 1, not powers of two, above the block count, unsorted, empty) names router.budgets, before a run folder', async () => {
  await useWasm();
  const root = sandbox();
  const { cfg, data, planner } = routerJob(6);
  const before = tf.memory().numTensors;
  await untouched(root, () => {
    for (const [budgets, msg] of [
      [[2, 4], 'lacks 1'], [[1, 3], 'budget 3 is not a power of two'], [[1, 2, 8], 'budget 8 exceeds the 4 blocks'],
      [[1, 4, 2], 'not strictly increasing'], [[], 'the budget set is empty'],
    ] as const) {
      expectOH(() => trainRouter(root, 'router', { ...cfg, router: { ...cfg.router, budgets: [...budgets] } }, data, planner), 'router.budgets', msg,
        'powers of two starting at 1, at most 4', '[1, 2, 4]');
    }
    expectOH(() => createRouter({ budgets: [1, 2, 3], hidden: 8, seed: 0 }, { plannerWidth: 16, numBlocks: 4 }), 'router.budgets', 'budget 3');
  });
  assert.equal(tf.memory().numTensors, before, 'a refused router run leaked tensors');
  disposePlanner(planner);
});

test('case 34: joint.topBlocks k larger than the backbone\'s GPT blocks names the layer count, before a run folder; a changed k does not resume a run', async () => {
  await useWasm();
  const root = sandbox();
  const m = tinyBackbone();
  const pl = createPlanner(PJ_PLANNER, PJ_SHAPE);
  const data = tinyJointData();
  const cfg = jointTuningConfig('smoke', { topBlocks: 1, steps: 1, evalEvery: 1, heldOutEvery: 4, driftImages: 4, valStates: 8, maxNllIncrease: 10, arOrders: 'random' });
  const done = trainJointTuning(root, 'stage5-joint', cfg, data, m, pl);
  disposePlanner(done.planner);
  disposeGPT(done.backbone);
  const before = tf.memory().numTensors;
  await untouched(root, () => {
    expectOH(() => trainJointTuning(root, 'k3', { ...cfg, topBlocks: 3 }, data, m, pl), 'joint.topBlocks', 'topBlocks = 3, but the backbone has 2 layers (h0 .. h1)',
      'choose k between 1 and 2');
    expectOH(() => jointTuningConfig('smoke', { topBlocks: 1.5 }), 'joint.topBlocks', 'not a positive integer');
    expectOH(() => jointTuningConfig('smoke', { topBlocks: 0 }), 'joint.topBlocks', 'k = 0 is Stage 3');
    // The existing run folder reopened with another k: refused, naming the field.
    expectOH(() => trainJointTuning(root, 'stage5-joint', { ...cfg, topBlocks: 2 }, data, m, pl), path.join(root, 'stage5-joint'), 'joint.topBlocks: run 1, current 2');
  });
  assert.equal(tf.memory().numTensors, before, 'a refused joint run leaked tensors');
  disposePlanner(pl);
  disposeGPT(m);
});

test('case 35: a planner run folder without a checkpoint, and a Stage 5 folder without its pair, name the folder and the notebook to run', async () => {
  await useWasm();
  const root = sandbox();
  const empty = path.join(root, 'planner-smoke', 'stage3-u_extrap-hard');
  fs.mkdirSync(path.join(empty, 'checkpoints'), { recursive: true });
  // A Stage 3 run stopped before its first validation: only config, manifest, metrics.
  const early = openRun({ root: path.join(root, 'planner-smoke'), stage: 'planner', name: 'stage4-u_extrap-hard-R1', config: { a: 1 } }).dir;
  // Stage 5 with the tuned backbone but no planner (its best-step file deleted by hand).
  const half = path.join(root, 'planner-smoke', 'stage5-joint');
  fs.mkdirSync(path.join(half, 'checkpoints'), { recursive: true });
  fs.writeFileSync(path.join(half, 'checkpoints', 'backbone-step000004-r1.00.safetensors'), 'not read');
  const never = path.join(root, 'planner-smoke', 'stage6-router');
  const before = tf.memory().numTensors;
  await untouched(root, () => {
    expectOH(() => bestPlannerCheckpoint(empty, 'notebooks/04_stage3_orderhead.ipynb'), empty, 'no trained planner here', 'run notebooks/04_stage3_orderhead.ipynb in this profile first');
    expectOH(() => bestPlannerCheckpoint(early, 'notebooks/05_stage4_latent_planner.ipynb'), early, 'no best-step', '05_stage4_latent_planner');
    expectOH(() => bestPlannerCheckpoint(never, 'notebooks/07_stage6_adaptive_budget.ipynb'), never, 'no trained planner here', '07_stage6_adaptive_budget');
    expectOH(() => loadJointPair(half), half, 'no tuned backbone and planner here (Stage 5 has not run)', 'run notebooks/06_stage5_joint_tuning.ipynb');
    expectOH(() => loadJointPair(never), never, 'Stage 5 has not run', '06_stage5_joint_tuning');
  });
  assert.equal(tf.memory().numTensors, before);
});

test('case 36: an evaluation setting whose stage has not run becomes a missing marker naming the folder and the notebook; evaluation passes it through', async () => {
  await useWasm();
  const root = sandbox();
  const plannerDir = path.join(root, 'planner-smoke');
  fs.mkdirSync(path.join(plannerDir, 'stage3-u_extrap-hard', 'checkpoints'), { recursive: true });
  const p = plannerRun(plannerDir, 'stage4-u_extrap-hard-R1');
  const world = evalWorld();
  const before = tf.memory().numTensors;
  const outcomes = await untouched(root, async () => {
    // As notebooks/08_evaluation.ipynb builds them.
    const settings = [
      settingOrMissing('OrderHead R=0', () => {
        const pl = loadPlanner(bestPlannerCheckpoint(path.join(plannerDir, 'stage3-u_extrap-hard'), 'notebooks/04_stage3_orderhead.ipynb')).planner;
        return orderHeadSetting(world.backbone, pl, PJ_GEO, 0);
      }),
      settingOrMissing('OrderHead R=2', () => {
        const pl = loadPlanner(bestPlannerCheckpoint(path.join(plannerDir, 'stage4-u_extrap-hard-R2'), 'notebooks/05_stage4_latent_planner.ipynb')).planner;
        return orderHeadSetting(world.backbone, pl, PJ_GEO, 2);
      }),
      // A planner that exists but was trained on another backbone.
      settingOrMissing('OrderHead R=1', () => {
        const pl = loadPlanner(p.best, { backboneFingerprint: 'the-evaluated-backbone' }).planner;
        return orderHeadSetting(world.backbone, pl, PJ_GEO, 1);
      }),
      settingOrMissing('adaptive budget', () => {
        const pair = loadJointPair(path.join(plannerDir, 'stage5-joint'));
        return { name: 'adaptive budget', backbone: pair.backbone, geo: PJ_GEO, policy: plannerPolicy(pair.planner, pair.backbone, PJ_GEO) };
      }),
    ];
    const [r0, r2, r1, budget] = settings;
    for (const s of settings) assert.ok(isMissing(s), `${s.name} is not missing`);
    const missing = (s: (typeof settings)[number]) => (s as MissingSetting).missing;
    assert.ok(missing(r0).includes(path.join(plannerDir, 'stage3-u_extrap-hard')) && missing(r0).includes('no trained planner here'), missing(r0));
    assert.match(missing(r0), /notebooks\/04_stage3_orderhead\.ipynb\); run it in this profile first/);
    assert.ok(missing(r2).includes('stage4-u_extrap-hard-R2') && missing(r2).includes('05_stage4_latent_planner'), missing(r2));
    assert.ok(missing(r1).includes(`${p.best} (backboneFingerprint)`) && missing(r1).includes('05_stage4_latent_planner'), missing(r1));
    assert.ok(missing(budget).includes(path.join(plannerDir, 'stage5-joint')) && missing(budget).includes('06_stage5_joint_tuning')
      && missing(budget).includes('07_stage6_adaptive_budget'), missing(budget));
    const events: string[] = [];
    const out = await evaluateSettings(settings, world.ctx, world.cfg, undefined, { onSetting: (e) => events.push(e.source) });
    assert.deepEqual(events, ['missing', 'missing', 'missing', 'missing']);
    return out;
  });
  assert.deepEqual(outcomes.map((o) => isMissing(o)), [true, true, true, true]);
  assert.match(tableMarkdown(evalResultsTable(outcomes)), /\| OrderHead R=0 \| missing/);
  assert.equal(tf.memory().numTensors, before, 'a failed setting leaked tensors');
  world.dispose();
});

test('case 37: a corrupt planner checkpoint (truncated, garbled, NaN weight, lacking a weight, another kind) names the file; resuming from it trains nothing', async () => {
  await useWasm();
  const root = sandbox();
  const p = plannerRun(root);
  const bytes = fs.readFileSync(p.best);
  const cut = path.join(root, 'cut-best.safetensors');
  fs.writeFileSync(cut, bytes.subarray(0, bytes.length - 50));
  const { tensors, metadata } = readSafetensors(p.best);
  const nan = path.join(root, 'nan-best.safetensors');
  const poisoned = { ...tensors, 'in.w': { ...tensors['in.w'], data: Float32Array.from(tensors['in.w'].data as Float32Array, (v, i) => (i === 5 ? NaN : v)) } };
  fs.writeFileSync(nan, encodeSafetensors(poisoned, metadata));
  const lacking = path.join(root, 'lacking-best.safetensors');
  const { 'head.w': _drop, ...rest } = tensors;
  fs.writeFileSync(lacking, encodeSafetensors(rest, metadata));
  const s1 = stage1Checkpoint(path.join(root, 'stage1'));
  // The newest planner-step checkpoint of the run garbled (a bad copy): the resume must stop on it.
  const g = Buffer.from(fs.readFileSync(p.last));
  g.fill(0x7b, 8, 40);
  fs.writeFileSync(p.last, g);
  const before = tf.memory().numTensors;
  await untouched(root, () => {
    expectOH(() => loadPlanner(cut), cut, 'truncated');
    expectOH(() => loadPlanner(nan), nan, "weight 'in.w'", 'non-finite', 'earlier checkpoint');
    expectOH(() => loadPlanner(lacking), lacking, 'weight head.w is missing', 'use another checkpoint');
    expectOH(() => loadPlanner(s1.file), s1.file, "is a 'stage1' checkpoint, not a planner", 'best-step*.safetensors');
    expectOH(() => trainPlanner(root, 'stage3-u_extrap-hard', p.cfg, p.data, p.grid), p.last, 'not valid JSON');
  }, ['stage3-u_extrap-hard/manifest.json']);
  assert.equal(tf.memory().numTensors, before, 'a refused load or resume leaked the planner or its optimizer state');
});

test('case 38: an evaluation cacheDir that is a file, or an invalid eval config with a cacheDir, is refused before anything is written', async () => {
  await useWasm();
  const root = sandbox();
  const file = path.join(root, 'eval-cache');
  fs.writeFileSync(file, 'a file, not a folder');
  const world = evalWorld();
  await untouched(root, async () => {
    await rejectsOH(() => evaluateSettings(world.settings(), world.ctx, world.cfg, undefined, { cacheDir: file }), `${file} (cacheDir)`,
      'cannot create the evaluation cache folder', 'writable folder');
    await rejectsOH(() => evaluateSettings(world.settings(), world.ctx, { ...world.cfg, seeds: [0] }, undefined, { cacheDir: path.join(root, 'cache') }),
      'eval.seeds', 'at least 2 distinct');
  });
  world.dispose();
});
