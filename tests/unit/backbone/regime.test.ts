/**
 * The regime of the generator's training (lib/backbone/regime.ts): the split
 * of the train split into the planner's, the validation and the training
 * images (disjoint, fixed, nested in K), epochs, and the refusals of a regime
 * or selection cadence that cannot work, before any run folder is made.
 */
import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { expectOH, sandbox, untouched, useWasm } from '../../helpers';
import { Regime, regimeEpochs, regimeImages } from '../../../lib/backbone/regime';
import { STAGE1_DEFAULTS, STAGE1_SEEDS, Stage1Config, stage1Config, trainingSeeds, trainStage1 } from '../../../lib/backbone/stage1';
import { stage1Checkpoint, tinyStage1 } from '../../fixtures/stage1-job';

const regime = (K: number | 'all', V: number, P: number): Regime => ({ uniqueImages: K, validationImages: V, plannerImages: P });
const range = (a: number, b: number): number[] => Array.from({ length: b - a }, (_, i) => a + i);

test('the split: planner images are [0, P); validation and training images are disjoint, within [P, n), and with K = all cover the split', () => {
  for (const [n, P, V] of [[24, 2, 4], [100, 10, 7], [57, 0, 1], [9, 4, 1]]) {
    const r = regimeImages(n, regime('all', V, P), 4);
    assert.deepEqual(Array.from(r.planner), range(0, P), `n ${n}: planner images`);
    assert.equal(r.validation.length, V);
    assert.equal(r.pool, n - P - V);
    assert.equal(r.k, r.pool);
    assert.equal(r.train.length, r.pool);
    for (const img of [...r.validation, ...r.train]) assert.ok(Number.isInteger(img) && img >= P && img < n, `n ${n}: image ${img} outside [${P}, ${n})`);
    const all = [...r.planner, ...r.validation, ...r.train].sort((a, b) => a - b);
    assert.deepEqual(all, range(0, n), `n ${n}: the three parts overlap or miss an image`);
  }
  // The rest of the split is shuffled before it is cut: validation is not simply the first V images after P.
  const big = regimeImages(100, regime('all', 7, 10), 4);
  assert.notDeepEqual(Array.from(big.validation), range(10, 17));
  assert.notDeepEqual(Array.from(big.train), [...big.train].sort((a, b) => a - b));
});

test('fixed: the same images for every call, training seed and batch; nested: K images are a prefix of any larger K\'s, validation the same for every K', () => {
  const n = 60, P = 5, V = 8, pool = n - P - V;
  const all = regimeImages(n, regime('all', V, P), 4);
  assert.deepEqual(regimeImages(n, regime('all', V, P), 4), all, 'two calls differ');
  assert.deepEqual(regimeImages(n, regime('all', V, P), 2), all, 'the batch changed the split');
  const cfg = (seed: number): Stage1Config => ({ ...STAGE1_DEFAULTS, orderMode: 'block-rar', seed, uniqueImages: 'all', validationImages: V, plannerImages: P, batch: 4 });
  assert.deepEqual(regimeImages(n, cfg(9), 4), regimeImages(n, cfg(0), 4), 'the training seed changed the split');
  const rasterArm: Stage1Config = { ...cfg(0), orderMode: 'raster' };
  assert.deepEqual(regimeImages(n, rasterArm, 4), all, 'the raster arm is split otherwise');
  let previous: Set<number> = new Set();
  for (const K of [4, 10, 20, pool]) {
    const r = regimeImages(n, regime(K, V, P), 4);
    assert.equal(r.k, K);
    assert.equal(r.pool, pool);
    assert.deepEqual(Array.from(r.train), Array.from(all.train.subarray(0, K)), `K ${K}: not a prefix of the pool`);
    assert.deepEqual(r.validation, all.validation, `K ${K}: other validation images`);
    assert.deepEqual(r.planner, all.planner);
    const now = new Set(r.train);
    for (const img of previous) assert.ok(now.has(img), `K ${K} lacks image ${img} of a smaller K`);
    previous = now;
  }
  assert.deepEqual(regimeImages(n, regime(pool, V, P), 4).train, all.train, "'all' is the whole pool");
});

test('epochs are N · batch / K', () => {
  assert.equal(regimeEpochs(300, 64, 19200), 1);
  assert.equal(regimeEpochs(10, 4, 8), 5);
  assert.equal(regimeEpochs(8, 8, 464), 64 / 464);
  const k = regimeImages(60000, { uniqueImages: 'all', validationImages: 512, plannerImages: 2048 }, 64).k;
  assert.equal(k, 60000 - 2048 - 512);
  assert.equal(regimeEpochs(300, 64, k), 19200 / 57440);
});

// ---- bad input ----
// What a user (or a crash) can get wrong here. Each test asserts an
// OrderHeadError naming the config field with a fix (expectOH), and that the
// temp folder is byte-identical afterwards, nothing added (untouched); both in
// tests/helpers.ts.

describe('bad input', () => {
  test('K larger than the pool, K smaller than a batch, P + V ≥ n, V < 1, K or P not a count: each names its field and the fix', () => {
    expectOH(() => regimeImages(24, regime(19, 4, 2), 4), 'stage1.uniqueImages', 'uniqueImages 19 is more than the 18 images left for training',
      'train split 24 − plannerImages 2 − validationImages 4', "use at most 18, or 'all'");
    expectOH(() => regimeImages(24, regime(3, 4, 2), 4), 'stage1.uniqueImages', 'uniqueImages 3 is smaller than one batch (4)', 'use at least 4 images', 'smaller stage1.batch');
    // 'all' is held to the same rule: a pool smaller than a batch is refused.
    expectOH(() => regimeImages(10, regime('all', 4, 3), 4), 'stage1.uniqueImages', 'uniqueImages 3 is smaller than one batch (4)');
    for (const [V, P] of [[20, 4], [20, 10], [24, 0]]) {
      expectOH(() => regimeImages(24, regime('all', V, P), 4), 'stage1.validationImages / plannerImages',
        `the train split has 24 images, fewer than plannerImages ${P} + validationImages ${V} + 1`, 'lower them', 'n = 24');
    }
    for (const V of [0, -3, 2.5, Number.NaN]) {
      expectOH(() => regimeImages(24, regime('all', V, 2), 4), 'stage1.validationImages', `validationImages ${V}`, 'at least 1 validation image');
    }
    for (const K of [0, 2.5, -4]) expectOH(() => regimeImages(24, regime(K, 4, 2), 4), 'stage1.uniqueImages', `uniqueImages ${K}`, "or 'all'");
    expectOH(() => regimeImages(24, regime('some' as never, 4, 2), 4), 'stage1.uniqueImages', "or 'all'");
    for (const P of [-1, 1.5]) expectOH(() => regimeImages(24, regime('all', 4, P), 4), 'stage1.plannerImages', `plannerImages ${P}`, 'whole number');
    // The errors name the caller's section.
    expectOH(() => regimeImages(24, regime(30, 4, 2), 4, 'joint'), 'joint.uniqueImages', 'use at most 18');
  });

  test('evalEvery 0 (no selection) or not a whole number of steps is refused by the config, naming stage1.evalEvery', () => {
    // 0 is a valid cadence for the optimiser (no evaluation) but not for Stage 1, whose every arm is selected on validation.
    expectOH(() => stage1Config('smoke', 'block-rar', { evalEvery: 0 }), 'stage1.evalEvery', 'evalEvery 0', 'every arm is selected on its validation NLL');
    for (const evalEvery of [-1, 2.5]) expectOH(() => stage1Config('smoke', 'block-rar', { evalEvery }), 'stage1.evalEvery', `${evalEvery}`);
    assert.equal(stage1Config('smoke', 'raster', { evalEvery: 1 }).evalEvery, 1);
  });

  test('trainStage1 refuses each of them before creating any run folder, and an existing run folder is left as it was', async () => {
    await useWasm();
    const root = sandbox();
    const { cfg, data, model } = tinyStage1(); // 8 images: 1 planner, 2 validation, a pool of 5; batch 4
    await untouched(root, () => {
      expectOH(() => trainStage1(root, 'x', { ...cfg, uniqueImages: 6 }, data, model), 'stage1.uniqueImages', 'more than the 5 images left for training');
      expectOH(() => trainStage1(root, 'x', { ...cfg, uniqueImages: 3 }, data, model), 'stage1.uniqueImages', 'smaller than one batch (4)');
      expectOH(() => trainStage1(root, 'x', { ...cfg, validationImages: 6, plannerImages: 2 }, data, model), 'stage1.validationImages / plannerImages', 'fewer than plannerImages 2 + validationImages 6 + 1');
      expectOH(() => trainStage1(root, 'x', { ...cfg, validationImages: 0 }, data, model), 'stage1.validationImages', 'at least 1 validation image');
      expectOH(() => trainStage1(root, 'x', { ...cfg, evalEvery: 0 }, data, model), 'stage1.evalEvery', 'evalEvery 0');
    });
    assert.deepEqual(fs.readdirSync(root), [], 'a refused run wrote something');
    // The same refusals against a run that exists: its folder (manifest, metrics, checkpoints, best file) is byte-identical.
    stage1Checkpoint(root, 'block-rar');
    await untouched(root, () => {
      expectOH(() => trainStage1(root, 'block-rar', { ...cfg, uniqueImages: 6 }, data, model), 'stage1.uniqueImages');
      expectOH(() => trainStage1(root, 'block-rar', { ...cfg, validationImages: 7 }, data, model), 'stage1.validationImages / plannerImages');
      expectOH(() => trainStage1(root, 'block-rar', { ...cfg, evalEvery: 0 }, data, model), 'stage1.evalEvery');
    });
  });
});

test('training seeds: at least 2 in default and 3 in full; a seed given twice or none is refused, naming the field', () => {
  assert.ok(STAGE1_SEEDS.default.length >= 2 && STAGE1_SEEDS.full.length >= 3, `${JSON.stringify(STAGE1_SEEDS)}`);
  assert.deepEqual(trainingSeeds('default'), [...STAGE1_SEEDS.default]);
  assert.deepEqual(trainingSeeds('smoke', [3, 1]), [3, 1]);
  expectOH(() => trainingSeeds('default', [0, 1, 0]), 'stage1 seeds', 'seed 0 is given twice', 'give each training seed once');
  expectOH(() => trainingSeeds('default', []), 'stage1 seeds', 'at least one');
  expectOH(() => trainingSeeds('default', [0, 1.5]), 'stage1 seeds', 'whole-number');
});
