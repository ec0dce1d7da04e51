/**
 * The crossover study (lib/study) at smoke size on a synthetic token cache
 * (4x4 tokens, 16 codes, 2x2 blocks): its cells and configs, shards merged
 * against one unsharded run, resume after a partial run, the pairing of the
 * arms' draws, the refusals (with nothing written), and no tensor leaks.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { expectOH, sandbox, untouched, useWasm } from '../../helpers';
import { rng } from '../../../lib/runtime/seed';
import { drawStage1Batch, stage1Draws } from '../../../lib/backbone/stage1';
import { regimeImages } from '../../../lib/backbone/regime';
import { spiralInBlockOrder } from '../../../lib/order';
import { cellConfigs, STUDY_ARMS, studyCells, StudyConfig, studyConfig, uniqueImagesAt } from '../../../lib/study/config';
import { CELL_FILE, CellResult, runStudy, StudyData, studySetup } from '../../../lib/study/run';
import { mergeStudy } from '../../../lib/study/merge';
import { analyseStudy, regimeChoice, StudyAnalysis, StudyRow, studyFigure, studyFindings, studyRows, writeStudyTables } from '../../../lib/study/analysis';

/** A token cache of seeded random tokens: 200 train images (pool 152 after the smoke regime's 16 + 32), 24 test images. */
function fakeData(): StudyData {
  const r = rng('study-test');
  const split = (n: number) => ({
    tokens: Int32Array.from({ length: n * 16 }, () => r.int(16)), labels: Int32Array.from({ length: n }, (_, i) => i % 3), n, source: 'synthetic',
  });
  return {
    cache: { train: split(200), test: split(24), grid: { h: 4, w: 4 }, codebookSize: 16, tokenizer: { fingerprint: 'tok-study', step: 0, config: {} as never } },
    numClasses: 3,
  };
}

/** A smoke study of 4 cells: K 16 and 'all', N 4, seeds 0 and 1. */
const small = (over: Partial<StudyConfig> = {}): StudyConfig => studyConfig('smoke', { uniqueImages: [16, 'all'], steps: [4], testImages: 12, ...over });
const withoutTime = (c: CellResult) => ({ ...c, seconds: 0 });

test('the study config: default K, N and seeds, smoke sizes, every cell and its four arms\' Stage 1 configs', () => {
  const d = studyConfig('default');
  assert.ok(d.uniqueImages.length >= 5 && d.uniqueImages.includes('all'));
  assert.ok(d.steps.includes(300) && d.steps.length >= 2 && d.seeds.length >= 2);
  assert.deepEqual(uniqueImagesAt(d, 300), [256, 1024], 'N = 300 runs the K whose epochs N = 100 does not reach');
  assert.equal(uniqueImagesAt(d, 100), d.uniqueImages);
  const s = studyConfig('smoke');
  assert.equal(studyCells(s).length, (5 + 2) * 2);
  assert.deepEqual(studyCells(s).filter((c) => c.n === 8).map((c) => c.name), ['K16-N8-s0', 'K16-N8-s1', 'K32-N8-s0', 'K32-N8-s1']);
  const cells = studyCells(small());
  assert.deepEqual(cells.map((c) => c.name), ['K16-N4-s0', 'K16-N4-s1', 'Kall-N4-s0', 'Kall-N4-s1']);
  const geo = studySetup('smoke', small(), fakeData()).geo;
  const cfg = cellConfigs('default', d, { k: 1024, n: 100, seed: 1 }, geo);
  assert.deepEqual(Object.keys(cfg), [...STUDY_ARMS]);
  for (const arm of STUDY_ARMS) {
    const c = cfg[arm];
    assert.equal(c.uniqueImages, 1024); assert.equal(c.steps, 100); assert.equal(c.seed, 1);
    assert.equal(c.checkpointEvery, 25, 'C at N/2 = 50 is a checkpoint'); assert.equal(c.evalEvery, 10); assert.equal(c.warmup, 17, 'warmup 50 of 300, scaled');
  }
  assert.equal(cfg['raster-only'].orderMode, 'raster');
  assert.equal(cfg['annealed-raster'].annealTo, 'raster');
  assert.equal(cfg['kept-random'].annealStart, 1);
  assert.deepEqual(cfg['annealed-fixed'].fixedOrder, spiralInBlockOrder(geo));
});

test('two shards run apart then merged equal one unsharded run; a partial, resumed run gives the same cells; tensors do not leak', async () => {
  await useWasm();
  const data = fakeData(), config = small();
  const one = sandbox(), a = sandbox(), b = sandbox(), partial = sandbox();
  const before = tf.memory().numTensors;
  const full = runStudy({ root: one, profile: 'smoke', config, data });
  assert.equal(tf.memory().numTensors, before, 'a study leaked tensors');
  assert.equal(full.trained, 4);
  runStudy({ root: a, profile: 'smoke', config, data, shard: { index: 0, count: 2 } });
  runStudy({ root: b, profile: 'smoke', config, data, shard: { index: 1, count: 2 } });
  const sharded = mergeStudy([a, b], config), whole = mergeStudy([one], config);
  assert.equal(sharded.missing.length, 0);
  assert.deepEqual(sharded.cells.map(withoutTime), whole.cells.map(withoutTime));
  assert.deepEqual(studyRows(analyseStudy(sharded)), studyRows(analyseStudy(whole)));
  // A study killed part-way: one cell with every arm stopped after 1 step, then the rest.
  const first = runStudy({ root: partial, profile: 'smoke', config, data, maxCells: 1, maxSteps: 1 });
  assert.equal(first.trained, 0);
  assert.ok(!fs.existsSync(path.join(partial, 'K16-N4-s0', CELL_FILE)), 'an unfinished cell wrote its results');
  assert.ok(fs.existsSync(path.join(partial, 'K16-N4-s0', 'raster-only', 'config.json')));
  const second = runStudy({ root: partial, profile: 'smoke', config, data });
  assert.equal(second.trained, 4);
  assert.deepEqual(mergeStudy([partial], config).cells.map(withoutTime), whole.cells.map(withoutTime));
  const again = runStudy({ root: partial, profile: 'smoke', config, data });
  assert.equal(again.skipped, 4, 'finished cells run again');
  // A grown grid (another N, at one K) keeps the folder's finished cells and trains only the new ones; the old grid still reads it.
  const grown = small({ steps: [4, 8], uniqueImagesAt: { 8: [16] } });
  const more = runStudy({ root: partial, profile: 'smoke', config: grown, data });
  assert.deepEqual([more.skipped, more.trained], [4, 2]);
  assert.deepEqual(mergeStudy([partial], grown).cells.map((c) => c.cell.name), ['K16-N4-s0', 'K16-N4-s1', 'Kall-N4-s0', 'Kall-N4-s1', 'K16-N8-s0', 'K16-N8-s1']);
  assert.deepEqual(analyseStudy(mergeStudy([partial], grown)).rows.map((r) => `${r.k}/${r.n}`).filter((x, i, all) => all.indexOf(x) === i), ['16/4', 'all/4', '16/8']);
  assert.deepEqual(mergeStudy([partial], config).cells.map(withoutTime), whole.cells.map(withoutTime));
  // The analysis, table files, figures and findings of the merged study.
  const an = analyseStudy(whole);
  assert.equal(an.rows.length, 2 * 4);
  for (const r of an.rows.filter((x) => x.arm !== 'raster-only')) {
    assert.ok(r.delta && r.delta.lo <= r.delta.mean && r.delta.mean <= r.delta.hi && r.delta.perSeed.length === 2);
  }
  const written = writeStudyTables(an, one);
  assert.match(fs.readFileSync(written.csv, 'utf8'), /^setting,status,testBits_mean/);
  assert.equal(fs.readFileSync(written.cellsCsv, 'utf8').trim().split('\r\n').length, 1 + 4 * 4);
  assert.equal(studyFigure(an, 'epochs', 'test').traces.length, 3);
  assert.match(studyFindings(an, 'test'), /annealed-raster\*\* (beats raster-only beyond its interval|beats raster-only beyond its interval nowhere)/);
  assert.equal(tf.memory().numTensors, before, 'the study leaked tensors');
});

test('paired data: every arm of a cell draws the same images and classes at every step', () => {
  const data = fakeData(), config = small();
  const { geo } = studySetup('smoke', config, data);
  const arms = cellConfigs('smoke', config, { k: 16, n: 8, seed: 1 }, geo);
  const train = { ...data.cache.train };
  for (let step = 0; step < 8; step++) {
    const drawn = STUDY_ARMS.map((arm) => {
      const cfg = arms[arm];
      const images = regimeImages(train.n, cfg, cfg.batch, 'test').train;
      const b = drawStage1Batch(stage1Draws(cfg.seed, step), train, images, geo, cfg, step, 3);
      return JSON.stringify(b.micro.map((m) => [Array.from(m.image), Array.from(m.classes)]));
    });
    for (const d of drawn) assert.equal(d, drawn[0], `step ${step}: the arms drew different images`);
  }
});

test('refusals: a seed twice, K past the pool or under a batch, a bad N, another study in the folder, a cell of another config, mixed merges', async () => {
  await useWasm();
  const data = fakeData();
  expectOH(() => studyConfig('smoke', { seeds: [0, 1, 0] }), 'study.seeds', 'given twice');
  expectOH(() => studyConfig('smoke', { seeds: [3] }), 'study.seeds', 'at least 2 seeds');
  expectOH(() => studyConfig('smoke', { steps: [6] }), 'study.steps', 'multiples of 4');
  expectOH(() => studyConfig('smoke', { uniqueImages: [16, 16] }), 'study.uniqueImages', 'given twice');
  expectOH(() => studyConfig('smoke', { uniqueImagesAt: { 8: [16, 'some'] as never } }), 'study.uniqueImagesAt.8', 'whole numbers');
  expectOH(() => studyConfig('smoke', { uniqueImagesAt: { x: [16] } }), 'study.uniqueImagesAt.x', 'number of steps');
  const root = sandbox();
  await untouched(root, () => {
    expectOH(() => runStudy({ root, profile: 'smoke', config: small({ uniqueImages: [500] }), data }), 'study.uniqueImages', 'more than the 152 images');
    expectOH(() => runStudy({ root, profile: 'smoke', config: small({ uniqueImages: [4] }), data }), 'study.uniqueImages', 'smaller than one batch (8)');
    expectOH(() => runStudy({ root, profile: 'smoke', config: small({ testImages: 99 }), data }), 'study.testImages', 'more than the test split');
  });
  // A study folder made with one config, run again with another: refused at study.json, naming the field; nothing changes.
  const one = small({ uniqueImages: [16], seeds: [0, 1] });
  runStudy({ root, profile: 'smoke', config: one, data, maxCells: 1, maxSteps: 1 });
  await untouched(root, () => {
    const err = expectOH(() => runStudy({ root, profile: 'smoke', config: { ...one, testImages: 10 }, data }), root, 'another config', 'study.testImages');
    assert.match(err.fix, /another study folder/);
  });
  // A cell folder of another study copied in: refused at its cell-config.json, naming the folder and the field.
  const other = sandbox();
  runStudy({ root: other, profile: 'smoke', config: { ...one, testImages: 10 }, data, maxCells: 1, maxSteps: 1 });
  fs.rmSync(path.join(root, 'K16-N4-s0'), { recursive: true });
  fs.cpSync(path.join(other, 'K16-N4-s0'), path.join(root, 'K16-N4-s0'), { recursive: true });
  await untouched(root, () => expectOH(() => runStudy({ root, profile: 'smoke', config: one, data }), path.join(root, 'K16-N4-s0'), 'a cell of another config', 'study:'));
  // Merging two studies is refused naming both folders; a duplicate cell with other results too.
  fs.rmSync(path.join(root, 'K16-N4-s0'), { recursive: true });
  runStudy({ root, profile: 'smoke', config: one, data });
  runStudy({ root: other, profile: 'smoke', config: { ...one, testImages: 10 }, data });
  const err = expectOH(() => mergeStudy([root, other], one), other, 'holds study');
  expectOH(() => mergeStudy([root], { ...one, testImages: 10 }), path.join(root, 'study.json'), 'other settings', 'study.testImages');
  assert.ok(err.message.includes(root), 'the first folder is not named');
  const copy = sandbox();
  fs.cpSync(root, copy, { recursive: true });
  const file = path.join(copy, 'K16-N4-s1', CELL_FILE);
  const cell = JSON.parse(fs.readFileSync(file, 'utf8')) as CellResult;
  cell.arms['kept-random'].testBits += 0.5;
  fs.writeFileSync(file, JSON.stringify(cell));
  const dup = expectOH(() => mergeStudy([root, copy], one), path.join(copy, 'K16-N4-s1'), 'two folders with different results');
  assert.ok(dup.message.includes(path.join(root, 'K16-N4-s1')));
  assert.equal(mergeStudy([root, root], one).cells.length, 2, 'the same folder twice is one study');
});

test('regimeChoice: the K with the smallest validation gap of annealed-to-raster at the main N, whatever the test numbers say', () => {
  const row = (k: number | 'all', n: number, arm: StudyRow['arm'], validationBits: number[], test: number): StudyRow => ({
    k, kImages: k === 'all' ? 1000 : k, n, epochs: (n * 64) / (k === 'all' ? 1000 : k), arm, seeds: [0, 1], selectedSteps: [n, n], validationBits,
    testBits: { mean: test, lo: test, hi: test, level: 0.95, reps: 2, perSeed: [test, test], images: 4 },
  });
  const a = { rows: [
    row(256, 300, 'raster-only', [3.0, 3.2], 1), row(256, 300, 'annealed-raster', [3.1, 3.3], 0), // Δval +0.1, but the best on test
    row(1024, 300, 'raster-only', [3.0, 3.0], 1), row(1024, 300, 'annealed-raster', [2.95, 3.01], 9), // Δval -0.02: chosen
    row('all', 300, 'raster-only', [3.0, 3.0], 1), row('all', 300, 'annealed-raster', [3.3, 3.3], 1),
    row(64, 100, 'raster-only', [5, 5], 1), row(64, 100, 'annealed-raster', [1, 1], 1), // another N: not a candidate
  ] } as unknown as StudyAnalysis;
  const c = regimeChoice(a, 300)!;
  assert.equal(c.k, 1024);
  assert.ok(Math.abs(c.validationDelta - -0.02) < 1e-12);
  assert.equal(c.beatsOnValidation, true);
  assert.deepEqual(c.candidates.map((x) => x.k), [256, 1024, 'all']);
  assert.equal(regimeChoice(a, 200), undefined, 'no cell at that N');
});
