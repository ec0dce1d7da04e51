/**
 * Notebook 03's per-reading analyses (issue 15, item 3): reference-order rank
 * with a bootstrap interval over images, own-loss share, locality and
 * agreement reading by reading, the side-by-side utility figure, and findings
 * that decide their verdicts from the numbers. Synthetic datasets with known
 * answers, plus one tiny built dataset for the identity own = u - u_extrap(w = 1).
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { useWasm } from '../../helpers';
import { oracleWorld, tinyOracleConfig } from '../../fixtures/oracle-world';
import { OrderHeadError } from '../../../lib/runtime/errors';
import { blockGeometry } from '../../../lib/order';
import { buildOracleDataset, loadOracleDataset, mergeOracleDataset, OracleDataset, OracleLabelSet, Reading } from '../../../lib/oracle';
import { meanOverImages, readingLabelings } from '../../../lib/oracle/analysis';
import { referenceRankTable } from '../../../lib/oracle/reference-rank';
import { ownLosses, ownLossTable } from '../../../lib/oracle/own-loss';
import { localityTable } from '../../../lib/oracle/locality';
import { agreementTable } from '../../../lib/oracle/agreement';
import { oracleFindings } from '../../../lib/oracle/findings';
import { readingSeries, utilityExamplesFigure } from '../../../lib/oracle/dataset-figures';

const geo = blockGeometry({ gridH: 4, gridW: 4, blockH: 1, blockW: 1 }); // 16 one-token blocks
const NB = 16, IMAGES = 30, STATES = 2;

interface FakeLabeling { reading: Reading; weight: 'no-neighbours' | 'uniform'; label: (image: number, s: number) => number; extra?: number }

/**
 * A dataset of IMAGES x STATES states, every one with S = {block 0} (15
 * candidates; block b has raster rank (b - 1) / 14). Each labeling's
 * u_extrap is extra (1 unless given), plus 1 on its label, and u = own +
 * u_extrap, so the label's own share of u is known: 3 / (3 + extra + 1); own
 * losses are 1 per hidden block and 3 on the label, stored as the primary's
 * token losses.
 */
function fakeDataset(specs: FakeLabeling[]): OracleDataset {
  const n = IMAGES * STATES;
  const image = Int32Array.from({ length: n }, (_, i) => Math.floor(i / STATES));
  const state = Int32Array.from({ length: n }, (_, i) => i % STATES);
  const visible = new Uint8Array(n * NB);
  const sequence = new Int32Array(n * NB).fill(-1);
  for (let i = 0; i < n; i++) {
    visible[i * NB] = 1;
    sequence[i * NB] = 0;
  }
  const own = (l: FakeLabeling, i: number, b: number) => (b === l.label(image[i], state[i]) ? 3 : 1);
  const labelings: OracleLabelSet[] = specs.map((l, k) => {
    const u = new Float32Array(n * NB).fill(NaN), uExtrap = new Float32Array(n * NB).fill(NaN);
    const aStar = new Int32Array(n), aStarExtrap = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      const a = l.label(image[i], state[i]);
      aStar[i] = a;
      aStarExtrap[i] = a;
      for (let b = 1; b < NB; b++) {
        uExtrap[i * NB + b] = (l.extra ?? 1) + (b === a ? 1 : 0);
        u[i * NB + b] = own(l, i, b) + uExtrap[i * NB + b];
      }
    }
    return { reading: l.reading, weight: l.weight, primary: k === 0, has: new Uint8Array(n).fill(1), u, uExtrap, aStar, aStarExtrap, lRest: new Float32Array(n).fill(15) };
  });
  const tokenLoss = new Float32Array(n * NB).fill(NaN);
  for (let i = 0; i < n; i++) for (let b = 1; b < NB; b++) tokenLoss[i * NB + b] = own(specs[0], i, b);
  return {
    dir: '/nowhere', manifest: {} as OracleDataset['manifest'], geo, n, image, state, size: new Int32Array(n).fill(1), classId: new Int32Array(n),
    sequence, visible, tokenLoss, labelings,
  };
}

// Labels by image: block 1 + (image % 15) covers every rank (i % 15) / 14 twice over 30 images: mean 0.5 exactly.
const spread = (image: number) => 1 + (image % 15);
const spread7 = (image: number) => 1 + ((7 * image) % 15); // another permutation of the same ranks
const last = () => 15; // the last hidden block in raster order: rank 1

test('meanOverImages: the mean of the counted states, an interval around it, resampled by image', () => {
  const values = [0.2, 0.4, NaN, 0.6, 0.8, 0.5, 0.5];
  const img = [0, 0, 0, 1, 1, 2, 3];
  const m = meanOverImages(values, img, 'seed');
  assert.equal(m.n, 6);
  assert.equal(m.images, 4);
  assert.ok(Math.abs(m.mean - 3 / 6) < 1e-12);
  assert.ok(m.lo <= m.mean && m.mean <= m.hi && m.lo < m.hi, JSON.stringify(m));
  assert.deepEqual(meanOverImages(values, img, 'seed'), m); // seeded
  // Constant within and across images: nothing to resample.
  const c = meanOverImages([0.7, 0.7, 0.7], [0, 1, 1], 's');
  assert.ok(Math.abs(c.lo - 0.7) < 1e-12 && Math.abs(c.hi - 0.7) < 1e-12);
  // States of one image move together: two images (all 0 / all 1) give an interval spanning both ends.
  const two = meanOverImages([0, 0, 0, 1, 1, 1], [0, 0, 0, 1, 1, 1], 's');
  assert.ok(two.lo === 0 && two.hi === 1, JSON.stringify(two));
  assert.equal(meanOverImages([NaN], [0], 's').n, 0);
  assert.throws(() => meanOverImages([1, 2], [0], 's'), (e: unknown) => e instanceof OrderHeadError && e.message.includes('meanOverImages'));
});

test('per reading: reference rank with intervals, own-loss share, locality and agreement on the same states', () => {
  const ds = fakeDataset([
    { reading: 'block-marginal', weight: 'no-neighbours', label: spread },
    { reading: 'teacher-forced', weight: 'no-neighbours', label: last, extra: 3 },
    { reading: 'one-step', weight: 'no-neighbours', label: spread7 },
    { reading: 'teacher-forced', weight: 'uniform', label: last, extra: 3 },
    { reading: 'block-marginal', weight: 'uniform', label: spread },
  ]);
  const { labelings, mask } = readingLabelings(ds);
  assert.deepEqual(labelings.map((l) => `${l.reading}/${l.weight}`), ['block-marginal/no-neighbours', 'teacher-forced/no-neighbours', 'one-step/no-neighbours']);
  assert.equal(mask.reduce((a, b) => a + b, 0), ds.n);

  const ranks = referenceRankTable(ds);
  const rank = (reading: string, target: string, weight = 'no-neighbours') => ranks.find((r) => r.reading === reading && r.target === target && (target === 'u' || r.weight === weight))!;
  for (const t of ['u', 'u_extrap']) {
    const bm = rank('block-marginal', t), tf = rank('teacher-forced', t), os1 = rank('one-step', t);
    assert.ok(Math.abs(bm.meanRank - 0.5) < 1e-12 && bm.lo < 0.5 && bm.hi > 0.5, JSON.stringify(bm));
    assert.ok(bm.hi - bm.lo < 0.4, `interval ${bm.lo}..${bm.hi} too wide for 30 images`);
    assert.equal(bm.images, IMAGES);
    assert.equal(bm.n, ds.n);
    assert.ok(Math.abs(os1.meanRank - 0.5) < 1e-12 && os1.lo < 0.5 && os1.hi > 0.5);
    assert.ok(tf.meanRank === 1 && tf.lo === 1 && tf.hi === 1, JSON.stringify(tf));
  }

  // Own share of u(a*): 3 / (3 + 1 + 1) from the primary's token losses; 3 / (3 + 3 + 1) from teacher-forced u - u_extrap (w = 1); one-step has neither.
  const own = ownLossTable(ds);
  assert.deepEqual(own.map((o) => [o.reading, o.source ?? 'none']),
    [['block-marginal', 'stored token losses'], ['teacher-forced', 'u - u_extrap (w = uniform)'], ['one-step', 'none']]);
  assert.ok(Math.abs(own[0].ownShareOfU - 0.6) < 1e-6 && own[0].shareLo <= 0.6 + 1e-6 && own[0].shareHi >= 0.6 - 1e-6, JSON.stringify(own[0]));
  assert.equal(own[0].aStarIsMaxOwnLoss, 1);
  assert.ok(Math.abs(own[0].chance - 1 / 15) < 1e-12);
  assert.ok(Math.abs(own[1].ownShareOfU - 3 / 7) < 1e-6, JSON.stringify(own[1]));
  assert.equal(own[1].aStarIsMaxOwnLoss, 1);
  assert.equal(own[2].n, 0);
  assert.ok(Number.isNaN(own[2].ownShareOfU));
  // The teacher-forced own losses (u - u_extrap of its uniform labeling): 3 on the label (block 15), 1 elsewhere, NaN on S.
  const tfOwn = ownLosses(ds, ds.labelings[1])!;
  assert.ok(Math.abs(tfOwn.own[15] - 3) < 1e-6 && Math.abs(tfOwn.own[1] - 1) < 1e-6 && Number.isNaN(tfOwn.own[0]));

  // Locality: S = {block 0} in a corner: 3 of 15 hidden blocks touch it; block 15 lies at distance 3.
  const loc = localityTable(ds);
  for (const r of loc) assert.ok(Math.abs(r.chanceLocal - 0.2) < 1e-12 && r.n === ds.n);
  assert.equal(loc.find((r) => r.reading === 'teacher-forced' && r.target === 'u')!.local, 0);
  const bmLocal = loc.find((r) => r.reading === 'block-marginal' && r.target === 'u')!.local;
  assert.ok(Math.abs(bmLocal - 6 / 30) < 1e-12); // labels 1, 4, 5 for images 0, 3, 4 (and 15, 18, 19)

  // Agreement: a reading against an identical one is 1; block-marginal picks block 15 only for image % 15 == 14.
  const same = agreementTable(fakeDataset([
    { reading: 'block-marginal', weight: 'no-neighbours', label: spread },
    { reading: 'one-step', weight: 'no-neighbours', label: spread },
  ])).filter((a) => a.what === 'reading vs reading');
  assert.equal(same.length, 2); // u and u_extrap (same weight)
  for (const a of same) {
    assert.equal(a.agree, 1);
    assert.ok(Math.abs(a.spearman - 1) < 1e-12 && Math.abs(a.chance - 1 / 15) < 1e-12);
    assert.deepEqual(a.readings, ['block-marginal', 'one-step']);
  }
  const agr = agreementTable(ds);
  const bmTf = agr.find((a) => a.what === 'reading vs reading' && a.target === 'u' && a.readings.join() === 'block-marginal,teacher-forced')!;
  assert.ok(Math.abs(bmTf.agree - 2 / 30) < 1e-12, JSON.stringify(bmTf));
  assert.equal(agr.filter((a) => a.what === 'reading vs reading').length, 6); // 3 pairs x (u, u_extrap)
  assert.deepEqual(agr.filter((a) => a.what === 'weight vs weight').map((a) => a.readings[0]), ['block-marginal', 'teacher-forced']);

  // Series of every reading on the same states.
  const series = readingSeries(ds);
  assert.deepEqual(series.map((s) => s.name), ['a* = argmax u (block-marginal)', 'a* = argmax u (teacher-forced)', 'a* = argmax u (one-step)',
    'argmax u_extrap, w = no-neighbours (block-marginal)', 'argmax u_extrap, w = no-neighbours (teacher-forced)', 'argmax u_extrap, w = no-neighbours (one-step)']);

  // Findings decide from the numbers: teacher-forced late, block-marginal includes 0.5, the pattern holds.
  const text = oracleFindings({ locality: loc, agreement: agr, own, ranks }).join('\n');
  assert.match(text, /teacher-forced labels lean late in raster/);
  assert.match(text, /block-marginal interval includes 0\.5/);
  assert.match(text, /the expected pattern holds/);
  assert.match(text, /under the one-step reading it cannot be told/);
  assert.match(text, /Locality, teacher-forced reading/);
  assert.ok(!/NaN/.test(text), text);
});

test('findings: the verdicts flip when the numbers do', () => {
  // Teacher-forced labels spread like block-marginal's; block-marginal and one-step always pick the last block.
  const ds = fakeDataset([
    { reading: 'block-marginal', weight: 'no-neighbours', label: last },
    { reading: 'teacher-forced', weight: 'no-neighbours', label: spread },
    { reading: 'one-step', weight: 'no-neighbours', label: spread7 },
  ]);
  const text = oracleFindings({ locality: localityTable(ds), agreement: agreementTable(ds), ranks: referenceRankTable(ds) }).join('\n');
  assert.match(text, /teacher-forced labels do not lean late in raster in this run/);
  assert.match(text, /block-marginal interval does not include 0\.5 \(it lies 0\.50 above it\)/);
  assert.match(text, /does not hold here: block-marginal lies farther from 0\.5 than one-step/);
  assert.ok(!/the expected pattern holds/.test(text));
});

test('utilityExamplesFigure: the readings side by side, one column per reading', () => {
  const ds = fakeDataset([
    { reading: 'block-marginal', weight: 'no-neighbours', label: spread },
    { reading: 'teacher-forced', weight: 'no-neighbours', label: last },
    { reading: 'one-step', weight: 'no-neighbours', label: spread7 },
  ]);
  const rows = [0, 5];
  const imgs = new Float32Array(rows.length * 8 * 8);
  const fig = utilityExamplesFigure(ds, rows, imgs, 8, 8, 'STAMP', { labelings: readingLabelings(ds).labelings, targets: ['u'] });
  assert.equal((fig.layout.grid as { columns: number }).columns, 5);
  assert.equal(fig.traces.filter((t) => t.type === 'heatmap').length, rows.length * 5);
  assert.equal(fig.traces.filter((t) => t.type === 'scatter').length, rows.length * 3); // one label marked per reading
  const titles = (fig.layout.annotations as { text: string }[]).map((a) => a.text);
  for (const r of ['block-marginal', 'teacher-forced', 'one-step']) assert.ok(titles.some((t) => t.includes(`u (${r})`)), r);
  assert.match(JSON.stringify(fig.layout.title), /block-marginal, teacher-forced, one-step readings \(STAMP\)/);
  // The teacher-forced label of row 0 is block 15 (bottom right) .
  const marks = fig.traces.filter((t) => t.type === 'scatter');
  assert.deepEqual([marks[1].x, marks[1].y], [[3], [3]]);
  assert.throws(() => utilityExamplesFigure(ds, rows, imgs, 8, 8, 'S', { labelings: [] }), (e: unknown) => e instanceof OrderHeadError && e.message.includes('labelings'));
});

test('own losses on a built dataset: stored token losses = u - u_extrap (w = uniform) of the same reading', async () => {
  await useWasm();
  const w = oracleWorld(fs.mkdtempSync(path.join(os.tmpdir(), 'oh-readings-')));
  const dir = path.join(w.root, 'ds');
  await buildOracleDataset(dir, tinyOracleConfig(w, {
    reading: 'block-marginal', weight: 'no-neighbours',
    compare: [{ reading: 'teacher-forced', weight: 'no-neighbours' }, { reading: 'one-step', weight: 'no-neighbours' }, { reading: 'block-marginal', weight: 'uniform' }],
  }));
  mergeOracleDataset(dir);
  const ds = loadOracleDataset(dir);
  const stored = ownLosses(ds, ds.labelings[0])!;
  const uniform = ds.labelings.find((l) => l.reading === 'block-marginal' && l.weight === 'uniform')!;
  const viaU = ownLosses(ds, uniform); // not the primary: the u - u_extrap path
  assert.equal(stored.source, 'stored token losses');
  assert.equal(viaU!.source, 'u - u_extrap (w = uniform)');
  let checked = 0;
  for (let i = 0; i < ds.n; i++) {
    if (!uniform.has[i]) continue;
    for (let b = 0; b < ds.geo.numBlocks; b++) {
      const s = stored.own[i * ds.geo.numBlocks + b], v = viaU!.own[i * ds.geo.numBlocks + b];
      if (ds.visible[i * ds.geo.numBlocks + b]) continue;
      assert.ok(Math.abs(s - v) < 1e-3 * Math.max(1, Math.abs(s)), `state ${i} block ${b}: ${s} vs ${v}`);
      checked++;
    }
  }
  assert.ok(checked > 10, `${checked} checked`);
  // Every reading's table row on the compare states; one-step has no own losses here.
  const own = ownLossTable(ds);
  assert.deepEqual(own.map((o) => o.reading), ['block-marginal', 'teacher-forced', 'one-step']);
  assert.ok(own[0].n > 0 && own[0].shareLo <= own[0].ownShareOfU && own[0].ownShareOfU <= own[0].shareHi);
  assert.equal(own[2].n, 0);
  const ranks = referenceRankTable(ds);
  for (const r of ranks) assert.ok(r.n > 0 && r.lo <= r.meanRank && r.meanRank <= r.hi, JSON.stringify(r));
});
