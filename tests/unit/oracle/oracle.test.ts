/** The oracle (Algorithms 1 and 2): fast path == plain reference, the utilities' definitions, bad input. */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { useWasm } from '../../helpers';
import { gptConfig } from '../../../lib/backbone/config';
import { createGPT, disposeGPT, GPT } from '../../../lib/backbone/gpt';
import { blockCells, blockDistance, blockGeometry, BlockGeometry, cellBlock } from '../../../lib/order';
import { rng } from '../../../lib/runtime/seed';
import { OrderHeadError } from '../../../lib/runtime/errors';
import {
  blockWeight, OracleConfig, OracleItem, READINGS, scoreRestLoss, scoreStates, scoreStatesReference, StateScore, WEIGHTS,
} from '../../../lib/oracle';

// A sharper-than-default init (std 0.5), so token losses and utilities vary by
// O(1) and a wrong slot, mask or position would show far above the tolerance.
const CFG = gptConfig('tiny', { initStd: 0.5 });
const GEOS: [string, BlockGeometry][] = [
  ['4x4 grid, 2x2 blocks', blockGeometry({ gridH: 4, gridW: 4, blockH: 2, blockW: 2 })],
  ['4x4 grid, 1x2 blocks', blockGeometry({ gridH: 4, gridW: 4, blockH: 1, blockW: 2 })],
];
const TOL = 1e-4;

let model: GPT | null = null;
async function tinyModel(): Promise<GPT> {
  await useWasm();
  if (!model) model = createGPT(CFG, 3);
  return model;
}

function randomItem(geo: BlockGeometry, size: number, seed: number): OracleItem {
  const r = rng(seed);
  const tokens = new Int32Array(geo.numTokens).map(() => Math.floor(r.next() * CFG.vocabSize));
  const visible = r.shuffle(Array.from({ length: geo.numBlocks }, (_, i) => i)).slice(0, size);
  return { tokens, classId: Math.floor(r.next() * CFG.numClasses), visible };
}

/** Every |S| from 0 to all-but-one. */
const sizesOf = (geo: BlockGeometry) => Array.from({ length: geo.numBlocks }, (_, k) => k);

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>, what: string): number {
  assert.equal(a.length, b.length, `${what}: length`);
  let d = 0;
  for (let i = 0; i < a.length; i++) {
    if (Number.isNaN(a[i]) || Number.isNaN(b[i])) { assert.ok(Number.isNaN(a[i]) && Number.isNaN(b[i]), `${what}[${i}]: NaN in one only`); continue; }
    d = Math.max(d, Math.abs(a[i] - b[i]));
  }
  return d;
}

function assertClose(fast: StateScore, ref: StateScore, what: string): void {
  assert.ok(Math.abs(fast.lRest - ref.lRest) < TOL, `${what} lRest ${fast.lRest} vs ${ref.lRest}`);
  for (const k of ['tokenLoss', 'u', 'uExtrap'] as const) {
    const d = maxDiff(fast[k], ref[k], `${what} ${k}`);
    assert.ok(d < TOL, `${what} ${k}: max |fast - reference| = ${d}`);
  }
}

/** Visible blocks and cells are NaN, unseen ones finite, and a* lies in R. */
function assertShape(geo: BlockGeometry, item: OracleItem, s: StateScore, what: string): void {
  const vis = new Set(item.visible);
  for (let b = 0; b < geo.numBlocks; b++) {
    assert.equal(Number.isNaN(s.u[b]), vis.has(b), `${what}: u[${b}]`);
    assert.equal(Number.isNaN(s.uExtrap[b]), vis.has(b), `${what}: uExtrap[${b}]`);
  }
  for (let c = 0; c < geo.numTokens; c++) assert.equal(Number.isNaN(s.tokenLoss[c]), vis.has(cellBlock(geo, c)), `${what}: tokenLoss[${c}]`);
  assert.ok(!vis.has(s.aStar) && !vis.has(s.aStarExtrap), `${what}: a* ${s.aStar} / ${s.aStarExtrap} is visible`);
  const rest = Array.from({ length: geo.numBlocks }, (_, b) => b).filter((b) => !vis.has(b));
  assert.equal(s.u[s.aStar], Math.max(...rest.map((b) => s.u[b])), `${what}: aStar is not the argmax of u`);
  assert.equal(s.uExtrap[s.aStarExtrap], Math.max(...rest.map((b) => s.uExtrap[b])), `${what}: aStarExtrap is not the argmax`);
}

for (const [geoName, geo] of GEOS) {
  for (const reading of READINGS) {
    test(`fast path == reference (${reading}, ${geoName}, all weights, |S| = ${sizesOf(geo).join(', ')})`, async () => {
      const m = await tinyModel();
      const items = sizesOf(geo).flatMap((size, k) => [randomItem(geo, size, 100 + k), randomItem(geo, size, 200 + k)]);
      let spread = 0;
      for (const weight of WEIGHTS) {
        // batch 3 forces several passes per state and packs of several states.
        for (const batch of weight === 'uniform' ? [undefined, 3] : [undefined]) {
          const cfg: OracleConfig = { reading, weight, batch };
          const fast = scoreStates(m, geo, items, cfg);
          const ref = scoreStatesReference(m, geo, items, cfg);
          fast.forEach((s, i) => {
            const what = `${weight} batch ${batch ?? 'default'} |S|=${items[i].visible.length}`;
            assertClose(s, ref[i], what);
            assertShape(geo, items[i], s, what);
            if (items[i].visible.length === 0) spread = Math.max(spread, ...Array.from(s.u).map((v) => Math.abs(v - s.u[0])));
          });
        }
      }
      assert.ok(spread > 0.05, `utilities barely vary (${spread}): the comparison would not be discriminative`);
    });
  }
}

test('|R| = 1: one candidate, u = L_rest(S) (L_rest(S ∪ {a}) = 0), u_extrap = 0', async () => {
  const m = await tinyModel();
  const geo = GEOS[0][1];
  const item = randomItem(geo, geo.numBlocks - 1, 7);
  const a = [0, 1, 2, 3].find((b) => !item.visible.includes(b))!;
  for (const reading of READINGS) {
    const [s] = scoreStates(m, geo, [item], { reading, weight: 'uniform' });
    assert.equal(s.aStar, a);
    assert.ok(Math.abs(s.u[a] - s.lRest) < 1e-5, `${reading}: u ${s.u[a]} vs lRest ${s.lRest}`);
    assert.equal(s.uExtrap[a], 0);
  }
});

/** The S ∪ {a} state scored on its own: its tokenLoss are l_j(S ∪ {a}), j ∈ R \ a. */
function withBlock(item: OracleItem, a: number): OracleItem {
  return { ...item, visible: [...item.visible, a] };
}

for (const reading of READINGS) {
  test(`u and u_extrap match independently scored S and S ∪ {a} (${reading}; every weight, the mean ones divided over R \\ a)`, async () => {
    const m = await tinyModel();
    for (const [geoName, geo] of GEOS) {
      for (const size of [0, 1, 2]) {
        const item = randomItem(geo, size, 300 + size);
        const scores = Object.fromEntries(WEIGHTS.map((weight) => [weight, scoreStates(m, geo, [item], { reading, weight })[0]]));
        const base = scores.uniform;
        const rest = Array.from({ length: geo.numBlocks }, (_, b) => b).filter((b) => !item.visible.includes(b));
        const next = scoreStates(m, geo, rest.map((a) => withBlock(item, a)), { reading, weight: 'uniform' });
        let farTerms = 0, nearTerms = 0;
        rest.forEach((a, k) => {
          const after = next[k];
          const what = `${geoName} |S|=${size} a=${a}`;
          assert.ok(Math.abs(base.u[a] - (base.lRest - after.lRest)) < TOL, `${what}: u != L_rest(S) - L_rest(S ∪ {a})`);
          const sums = { uniform: 0, 'no-neighbours': 0, distance: 0, 'no-neighbours-mean': 0, 'distance-mean': 0 };
          for (let j = 0; j < geo.numTokens; j++) {
            const bj = cellBlock(geo, j);
            if (item.visible.includes(bj) || bj === a) continue;
            const drop = base.tokenLoss[j] - after.tokenLoss[j];
            const dist = blockDistance(geo, bj, a);
            sums.uniform += drop;
            sums['no-neighbours'] += dist > 1 ? drop : 0;
            sums.distance += dist * drop;
            if (dist > 1) farTerms++; else nearTerms++;
          }
          // The mean weights: the same sums over the far (resp. distance-weighted) unseen *blocks* of a.
          const others = rest.filter((b) => b !== a);
          const far = others.filter((b) => blockDistance(geo, b, a) > 1).length;
          const dsum = others.reduce((acc, b) => acc + blockDistance(geo, b, a), 0);
          sums['no-neighbours-mean'] = far > 0 ? sums['no-neighbours'] / far : 0;
          sums['distance-mean'] = sums.distance / dsum;
          for (const weight of WEIGHTS) {
            assert.ok(Math.abs(scores[weight].uExtrap[a] - sums[weight]) < TOL,
              `${what} ${weight}: uExtrap ${scores[weight].uExtrap[a]} vs Σ w·drop ${sums[weight]}`);
          }
          // 2x2 blocks on a 4x4 grid: every block neighbours every other, so no-neighbours sees nothing.
          if (geo.blocksX === 2 && geo.blocksY === 2) {
            assert.equal(scores['no-neighbours'].uExtrap[a], 0);
            assert.equal(scores['no-neighbours-mean'].uExtrap[a], 0);
          }
        });
        if (geo.blocksY === 4) assert.ok(farTerms > 0 && nearTerms > 0, 'the 1x2 geometry should have near and far tokens');
      }
    }
  });
}

for (const reading of READINGS) {
  test(`scoreRestLoss == scoreStates' L_rest, and leaks nothing (${reading})`, async () => {
    const m = await tinyModel();
    for (const [geoName, geo] of GEOS) {
      const items = sizesOf(geo).map((size, k) => randomItem(geo, size, 300 + k));
      const full = scoreStates(m, geo, items, { reading, weight: 'uniform' });
      scoreRestLoss(m, geo, items, { reading, batch: 2 }); // warm-up: kernels and memo tables allocate once
      const before = tf.memory().numTensors;
      const rest = scoreRestLoss(m, geo, items, { reading, batch: 2 });
      assert.equal(tf.memory().numTensors, before, 'scoreRestLoss leaked tensors');
      rest.forEach((v, i) => assert.ok(Math.abs(v - full[i].lRest) < TOL, `${geoName} |S|=${items[i].visible.length}: ${v} vs ${full[i].lRest}`));
    }
  });
}

test('block-marginal scores each block alone: no unseen block is context for another', async () => {
  // Changing one unseen block's tokens moves only that block's l_B(S) in the block-marginal
  // reading; teacher-forced, it moves the losses of the blocks after it in raster order too.
  const m = await tinyModel();
  const geo = GEOS[0][1];
  const item = randomItem(geo, 1, 7);
  const rest = Array.from({ length: geo.numBlocks }, (_, b) => b).filter((b) => !item.visible.includes(b));
  const changed = { ...item, tokens: item.tokens.slice() };
  for (const c of blockCells(geo, rest[0])) changed.tokens[c] = (changed.tokens[c] + 1) % CFG.vocabSize;
  for (const reading of ['block-marginal', 'teacher-forced'] as const) {
    const [a, b] = scoreStates(m, geo, [item, changed], { reading, weight: 'uniform' });
    const moved = rest.slice(1).some((blk) => blockCells(geo, blk).some((c) => Math.abs(a.tokenLoss[c] - b.tokenLoss[c]) > 1e-5));
    assert.equal(moved, reading === 'teacher-forced', `${reading}: other blocks' losses ${moved ? 'moved' : 'did not move'}`);
  }
});

test('blockWeight: uniform = 1, no-neighbours = 0 within distance 1, distance grows with distance', () => {
  for (const d of [1, 2, 3, 7]) {
    assert.equal(blockWeight('uniform', d), 1);
    assert.equal(blockWeight('no-neighbours', d), d <= 1 ? 0 : 1);
    assert.equal(blockWeight('distance', d), d);
  }
  assert.ok(blockWeight('distance', 3) > blockWeight('distance', 2) && blockWeight('distance', 2) > blockWeight('distance', 1));
});

test('no-neighbours ignores tokens of neighbouring blocks: uExtrap = Σ over far tokens only', async () => {
  // 1x2 blocks on 4x4: a 4x2 block grid; block 4 (row 2, col 0) has neighbours 2, 3, 5, 6 (7 is visible)
  // and far blocks 0, 1. (Not block 0: revealing R's first raster block leaves the teacher-forced order as it was.)
  const m = await tinyModel();
  const geo = GEOS[1][1];
  const item = randomItem(geo, 1, 11);
  item.visible = [7];
  const [nn] = scoreStates(m, geo, [item], { reading: 'teacher-forced', weight: 'no-neighbours' });
  const [after] = scoreStates(m, geo, [withBlock(item, 4)], { reading: 'teacher-forced', weight: 'uniform' });
  const [base] = scoreStates(m, geo, [item], { reading: 'teacher-forced', weight: 'uniform' });
  let far = 0, near = 0;
  for (let j = 0; j < geo.numTokens; j++) {
    const bj = cellBlock(geo, j);
    if (bj === 4 || bj === 7) continue;
    const drop = base.tokenLoss[j] - after.tokenLoss[j];
    if ([2, 3, 5, 6].includes(bj)) near += drop; else far += drop;
  }
  assert.ok(Math.abs(nn.uExtrap[4] - far) < TOL, `no-neighbours ${nn.uExtrap[4]} vs far drops ${far}`);
  assert.ok(Math.abs(base.uExtrap[4] - (far + near)) < TOL, `uniform ${base.uExtrap[4]} vs all drops ${far + near}`);
  assert.ok(Math.abs(near) > 1e-3 && Math.abs(far) > 1e-3, 'neighbouring drops should be non-zero for this test to mean something');
});

test('scoring leaks no tensors (fast and reference, every reading)', async () => {
  const m = await tinyModel();
  for (const [, geo] of GEOS) {
    const items = sizesOf(geo).map((size, k) => randomItem(geo, size, 400 + k));
    for (const reading of READINGS) {
      scoreStates(m, geo, items, { reading, weight: 'distance', batch: 4 }); // warm-up
      const before = tf.memory().numTensors;
      scoreStates(m, geo, items, { reading, weight: 'distance', batch: 4 });
      scoreStates(m, geo, items, { reading, weight: 'uniform' });
      scoreStatesReference(m, geo, items.slice(0, 2), { reading, weight: 'uniform' });
      assert.equal(tf.memory().numTensors, before, `${reading}: tensors leaked`);
    }
  }
});

test('bad input: grid mismatch, duplicate / out-of-range / all visible blocks, tokens, class, config', async () => {
  const m = await tinyModel();
  const geo = GEOS[0][1];
  const ok = randomItem(geo, 1, 9);
  const cfg: OracleConfig = { reading: 'teacher-forced', weight: 'uniform' };
  const refuses = (f: () => unknown, field: RegExp) =>
    assert.throws(f, (e: unknown) => e instanceof OrderHeadError && field.test(e.where), `expected an OrderHeadError naming ${field}`);
  for (const score of [scoreStates, scoreStatesReference]) {
    refuses(() => score(m, blockGeometry({ gridH: 8, gridW: 8 }), [ok], cfg), /backbone\.gridH/);
    refuses(() => score(m, geo, [ok, { ...ok, visible: [1, 2, 1] }], cfg), /items\[1\]\.visible/);
    refuses(() => score(m, geo, [{ ...ok, visible: [4] }], cfg), /items\[0\]\.visible/);
    refuses(() => score(m, geo, [{ ...ok, visible: [-1] }], cfg), /items\[0\]\.visible/);
    refuses(() => score(m, geo, [{ ...ok, visible: [0.5] }], cfg), /items\[0\]\.visible/);
    refuses(() => score(m, geo, [{ ...ok, visible: [0, 1, 2, 3] }], cfg), /items\[0\]\.visible/);
    refuses(() => score(m, geo, [{ ...ok, tokens: new Int32Array(15) }], cfg), /items\[0\]\.tokens/);
    refuses(() => score(m, geo, [{ ...ok, tokens: new Int32Array(16).fill(CFG.vocabSize) }], cfg), /items\[0\]\.tokens/);
    refuses(() => score(m, geo, [{ ...ok, classId: CFG.numClasses + 1 }], cfg), /items\[0\]\.classId/);
    refuses(() => score(m, geo, [ok], { ...cfg, reading: 'two-step' as never }), /oracle\.reading/);
    refuses(() => score(m, geo, [ok], { ...cfg, weight: 'gaussian' as never }), /oracle\.weight/);
  }
  refuses(() => scoreStates(m, geo, [ok], { ...cfg, batch: 0 }), /oracle\.batch/);
  assert.deepEqual(scoreStates(m, geo, [], cfg), []);
});

test('teardown', () => { if (model) disposeGPT(model); model = null; });
