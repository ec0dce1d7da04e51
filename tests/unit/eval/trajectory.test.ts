/**
 * Trajectory metrics (lib/eval/trajectory.ts) on a tiny random backbone: the
 * remaining-loss curve against direct scoreStates sums, the telescoping of
 * the realized utilities, paired differences and their findings, config
 * errors, and tensor neutrality.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { throwsOH, useWasm } from '../../helpers';
import { gptConfig } from '../../../lib/backbone/config';
import { createGPT, GPT } from '../../../lib/backbone/gpt';
import { blockGeometry, rasterPolicy, randomPolicy } from '../../../lib/order';
import { Reading, scoreStates } from '../../../lib/oracle/utility';
import { OrderHeadError } from '../../../lib/runtime/errors';
import { rng } from '../../../lib/runtime/seed';
import { evalConfig } from '../../../lib/eval/config';
import { evaluationFindings } from '../../../lib/eval/findings';
import type { SettingOutcome } from '../../../lib/eval/results';
import { tableMarkdown, TRAJECTORY_REFERENCE, trajectoryResultsTable } from '../../../lib/eval/tables';
import {
  oraclePolicy, pairedTrajectoryDifference, REMAINING_LOSS_TOTALS, TrajectoryConfig, TrajectoryData, trajectoryMetrics, TrajectoryResult,
} from '../../../lib/eval/trajectory';

const CFG = gptConfig('tiny', { initStd: 0.5 }); // 4x4 tokens, vocab 16, 3 classes
const GEO = blockGeometry({ gridH: 4, gridW: 4, blockH: 2, blockW: 2 }); // 4 blocks
const NB = GEO.numBlocks;

let world: { model: GPT; data: TrajectoryData } | undefined;
async function setup() {
  await useWasm();
  if (world) return world;
  const r = rng('trajectory-test');
  const n = 8;
  world = {
    model: createGPT(CFG, 11),
    data: { tokens: Int32Array.from({ length: n * 16 }, () => r.int(16)), labels: Int32Array.from({ length: n }, (_, i) => i % 3) },
  };
  return world;
}

const close = (a: number, b: number, what: string) => assert.ok(Math.abs(a - b) <= 1e-4 * Math.max(1, Math.abs(b)), `${what}: ${a} vs ${b}`);

/** L_rest(S_t) by scoreStates for every image and step along the result's own orders. */
function directCurve(model: GPT, data: TrajectoryData, res: TrajectoryResult, reading: Reading): number[][] {
  return res.blockOrders.map((order, i) => Array.from({ length: NB }, (_, t) =>
    scoreStates(model, GEO, [{ tokens: data.tokens.subarray(i * 16, (i + 1) * 16), classId: data.labels[i], visible: order.slice(0, t) }], { reading, weight: 'uniform' })[0].lRest));
}

const oc = (reading: Reading): Partial<TrajectoryConfig> => ({ images: 5, oracleImages: 3, reading, weight: 'no-neighbours', bootstrapReps: 50 });

for (const reading of ['block-marginal', 'teacher-forced'] as const) {
  test(`${reading}: curve, area and first-half drop equal direct sums of scoreStates' L_rest along the same orders; realized u telescopes to L_rest(∅); no leaks`, async () => {
    const { model, data } = await setup();
    const before = tf.memory().numTensors;
    const results = [
      await trajectoryMetrics(model, GEO, rasterPolicy(GEO), data, oc(reading)),
      await trajectoryMetrics(model, GEO, randomPolicy(GEO, 5), data, oc(reading)),
      await trajectoryMetrics(model, GEO, oraclePolicy(model, GEO, data, { reading, weight: 'no-neighbours' }), data, oc(reading)),
    ];
    assert.equal(tf.memory().numTensors, before, 'trajectory metrics leaked tensors');
    for (const res of results) {
      assert.equal(res.reading, reading);
      assert.equal(res.images, 5);
      const direct = directCurve(model, data, res, reading);
      direct.forEach((row, i) => {
        row.forEach((l, t) => close(res.restLossPerImage[i * NB + t], l, `${res.policy} image ${i} L_rest(S_${t})`));
        close(res.perImage.start[i], row[0], `${res.policy} image ${i} start`);
        close(res.perImage.area[i], (row.reduce((a, b) => a + b, 0) - row[0] / 2) / NB, `${res.policy} image ${i} area (trapezoids down to 0 at t = n)`);
        close(res.perImage.firstHalf[i], row[0] - row[NB / 2], `${res.policy} image ${i} first half`);
      });
      for (let t = 0; t < NB; t++) close(res.restLoss.mean[t], direct.reduce((a, row) => a + row[t], 0) / direct.length, `${res.policy} mean L_rest(S_${t})`);
      for (const k of REMAINING_LOSS_TOTALS) {
        const s = res.totals[k];
        assert.ok(s.lo <= s.mean && s.mean <= s.hi && s.n === 5, `${res.policy} ${k}: ${JSON.stringify(s)}`);
      }
      // Telescoping: the realized utilities of all steps sum to L_rest(∅), image by image, whatever the order.
      const c = res.oracle!;
      assert.equal(c.images, 3);
      for (let i = 0; i < 3; i++) close(c.perImage.realized[i], res.perImage.start[i], `${res.policy} image ${i}: Σ_t u(a_t|S_t) vs L_rest(∅)`);
    }
    const [raster, random, oracle] = results;
    // L_rest(∅) does not depend on the order, the area does.
    for (let i = 0; i < 5; i++) assert.equal(random.perImage.start[i], raster.perImage.start[i], `image ${i}`);
    assert.ok(raster.perImage.area.some((a, i) => Math.abs(a - oracle.perImage.area[i]) > 1e-4), 'the area tells orders apart');
    // The greedy oracle realizes the oracle's maximum at every step; raster realizes raster-next.
    for (const s of oracle.oracle!.perStep) {
      assert.equal(s.realized, s.oracle, `step ${s.step}`);
      assert.equal(s.agreementU, 1);
      assert.ok(s.oracle >= s.random - 1e-6 && Number.isFinite(s.farRealized));
    }
    assert.deepEqual(Array.from(oracle.oracle!.perImage.regretU), [0, 0, 0]);
    for (const s of raster.oracle!.perStep) assert.equal(s.realized, s.raster);
    const share = random.oracle!.totals.farShare;
    assert.ok(Number.isFinite(share.mean) && share.lo <= share.mean && share.mean <= share.hi);
  });
}

test('oracle comparison on a subset: fewer images and steps bound its cost, the curve keeps every step; oracleImages 0 skips it', async () => {
  const { model, data } = await setup();
  const full = await trajectoryMetrics(model, GEO, rasterPolicy(GEO), data, oc('block-marginal'));
  const sub = await trajectoryMetrics(model, GEO, rasterPolicy(GEO), data, { ...oc('block-marginal'), steps: [0, 2] });
  assert.deepEqual(sub.oracle!.steps, [0, 2]);
  assert.equal(sub.oracle!.perStep[1].realized, full.oracle!.perStep[2].realized);
  assert.deepEqual(sub.restLossPerImage, full.restLossPerImage);
  const none = await trajectoryMetrics(model, GEO, rasterPolicy(GEO), data, { ...oc('block-marginal'), oracleImages: 0 });
  assert.equal(none.oracle, undefined);
  assert.deepEqual(none.totals, full.totals);
  let ticks = 0;
  await trajectoryMetrics(model, GEO, rasterPolicy(GEO), data, { ...oc('block-marginal'), steps: [1] }, (done, total) => { ticks = done; assert.equal(total, NB + 1); });
  assert.equal(ticks, NB + 1);
});

test('paired differences: image by image against the reference; the table and the findings read them (an interval containing 0 is no difference)', async () => {
  const { model, data } = await setup();
  const cfg = { ...oc('block-marginal'), oracleImages: 0 };
  const raster = await trajectoryMetrics(model, GEO, rasterPolicy(GEO), data, cfg);
  const random = await trajectoryMetrics(model, GEO, randomPolicy(GEO, 5), data, cfg);
  const d = pairedTrajectoryDifference(random, raster, 'area');
  close(d.mean, random.totals.area.mean - raster.totals.area.mean, 'mean difference');
  assert.ok(d.lo <= d.mean && d.mean <= d.hi && d.n === 5);
  const self = pairedTrajectoryDifference(raster, raster, 'firstHalf');
  assert.deepEqual([self.mean, self.lo, self.hi], [0, 0, 0]);
  const fewer = await trajectoryMetrics(model, GEO, rasterPolicy(GEO), data, { ...cfg, images: 4 });
  throwsOH(() => pairedTrajectoryDifference(random, fewer, 'area'), 'pairedTrajectoryDifference(ref)');

  // Synthetic settings whose per-image differences are known: shifted (a clear difference) and alternating (none).
  const shifted = (by: (i: number) => number, key: 'area' | 'start' = 'area'): TrajectoryResult => ({
    ...raster, perImage: { ...raster.perImage, [key]: raster.perImage[key].map((v, i) => v + by(i)) },
  });
  const setting = (name: string, trajectory: TrajectoryResult) => ({ name, metrics: {}, trajectory }) as unknown as SettingOutcome;
  const outcomes = [
    setting(TRAJECTORY_REFERENCE, raster),
    setting('later', shifted(() => 1)),
    setting('sooner', shifted(() => -1)),
    setting('same', shifted((i) => (i % 2 ? 1e-3 : -1e-3) * (i < 4 ? 1 : 0))),
    setting('other backbone', shifted(() => 0.5, 'start')),
    setting('random order', random),
  ];
  const text = evaluationFindings(outcomes, 'smoke', 'test');
  const line = (name: string) => text.split('\n').find((l) => l.startsWith(`  - ${name}:`)) ?? '';
  assert.match(line('later'), /front-loads the information less than \*block-RAR \+ raster order\*: area higher by 1\.00 \[1\.00, 1\.00\] nats/);
  assert.match(line('sooner'), /front-loads the information more than .*area lower by 1\.00 \[1\.00, 1\.00\] nats/);
  assert.match(line('same'), /no difference in area from/);
  assert.match(line('same'), /no difference in what the first half removes \(Δ \+0\.00 \[\+0\.00, \+0\.00\]\)/);
  assert.match(line('other backbone'), /mixes backbone and order/);
  assert.ok(!line('random order').includes('mixes backbone'), 'same backbone: L_rest(∅) is the same');
  assert.equal(/no difference in area/.test(line('random order')), d.lo <= 0 && d.hi >= 0, line('random order'));
  assert.match(text, /telescopes/);
  // The table: Δ columns against the reference, none in the reference's own row.
  const table = trajectoryResultsTable(outcomes);
  assert.deepEqual(table.columns.map((c) => c.key), ['area', 'firstHalf', 'areaDiff', 'firstHalfDiff', 'start']);
  assert.equal(table.rows[0].values?.areaDiff, undefined);
  close(table.rows[1].values!.areaDiff!.mean, 1, 'Δ area of the shifted setting');
  assert.match(tableMarkdown(table), /\| later \| [\d.]+ ± [\d.]+ \| [\d.]+ ± [\d.]+ \| 1\.00 ± 0\.00 \|/);
  assert.ok(table.caption.includes(`minus ${TRAJECTORY_REFERENCE}, paired`));
});

test('bad trajectory configs name the eval.trajectory field', async () => {
  const { model, data } = await setup();
  const bad: [Partial<TrajectoryConfig>, string][] = [
    [{ images: 0 }, 'eval.trajectory.images'],
    [{ images: 2.5 }, 'eval.trajectory.images'],
    [{ images: 4, oracleImages: 5 }, 'eval.trajectory.oracleImages'],
    [{ images: 4, oracleImages: -1 }, 'eval.trajectory.oracleImages'],
    [{ images: 4, oracleImages: 2, steps: [2, 1] }, 'eval.trajectory.steps'],
    [{ images: 4, oracleImages: 2, steps: [NB] }, 'eval.trajectory.steps'],
    [{ images: 4, oracleImages: 2, reading: 'sideways' as Reading }, 'eval.trajectory.reading'],
    [{ images: 4, oracleImages: 2, bootstrapReps: 1 }, 'eval.trajectory.bootstrapReps'],
    [{ images: 4, oracleImages: 2, level: 1.5 }, 'eval.trajectory.level'],
    [{ images: 4, oracleImages: 2, batch: 0 }, 'eval.trajectory.batch'],
  ];
  for (const [cfg, field] of bad) {
    await assert.rejects(trajectoryMetrics(model, GEO, rasterPolicy(GEO), data, cfg),
      (err: unknown) => err instanceof OrderHeadError && err.where === field, `${JSON.stringify(cfg)} should name ${field}`);
  }
  await assert.rejects(trajectoryMetrics(model, GEO, rasterPolicy(GEO), data, { images: 9, oracleImages: 1 }), /trajectoryMetrics\(data\)/);
  throwsOH(() => evalConfig('smoke', { trajectory: { oracleImages: 99 } }), 'eval.trajectory.oracleImages');
  throwsOH(() => evalConfig('smoke', { trajectory: { reading: 'sideways' as Reading } }), 'eval.trajectory.reading');
});
