/**
 * Tests for lib/order: block geometry, block orders, visible states, the
 * order-policy interface and rollOutOrder. Plain arrays only, no tensors:
 * the whole file runs in well under a second.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { OrderHeadError } from '../../../lib/runtime/errors';
import { rng, seedFrom } from '../../../lib/runtime/seed';
import {
  blockCells, blockDistance, blockGeometry, blockRowCol, cellBlock, cellsOfBlockOrder, checkPolicyChoice,
  divisors, emptyState, fixedOrderPolicy, isComplete, nearestToVisiblePolicy, neighbours, OrderPolicy,
  PolicyState, randomBlockOrder, randomPolicy, rasterBlockOrder, rasterCells, rasterPolicy, remainingBlocks,
  reveal, rollOutOrder, spiralInBlockOrder, stateFromSequence, tokenRasterGeometry, validateBlockOrder,
} from '../../../lib/order';
import { throwsOH } from '../../helpers';


/** The async twin of throwsOH. */
async function rejectsOH(fn: () => Promise<unknown>, ...parts: string[]): Promise<OrderHeadError> {
  let caught: unknown;
  try {
    await fn();
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof OrderHeadError, `expected OrderHeadError, got ${caught instanceof Error ? caught.stack : String(caught)}`);
  for (const p of parts) assert.ok(caught.message.includes(p), `message lacks '${p}': ${caught.message}`);
  return caught;
}

/** True when `xs` holds each of 0..n-1 exactly once. */
function isPermutation(xs: ArrayLike<number>, n: number): boolean {
  if (xs.length !== n) return false;
  const seen = new Uint8Array(n);
  for (let i = 0; i < xs.length; i++) {
    const v = xs[i];
    if (!Number.isInteger(v) || v < 0 || v >= n || seen[v]) return false;
    seen[v] = 1;
  }
  return true;
}

const geo = blockGeometry(); // 8 x 8 tokens, 2 x 2 blocks: a 4 x 4 block grid

test('blockGeometry: defaults and derived counts', () => {
  assert.deepEqual({ ...geo }, {
    gridH: 8, gridW: 8, blockH: 2, blockW: 2, blocksY: 4, blocksX: 4, numBlocks: 16, tokensPerBlock: 4, numTokens: 64,
  });
  const g = blockGeometry({ gridH: 6, gridW: 8, blockH: 3, blockW: 2 });
  assert.equal(g.blocksY, 2);
  assert.equal(g.blocksX, 4);
  assert.equal(g.numBlocks, 8);
  assert.equal(g.tokensPerBlock, 6);
  assert.equal(g.numTokens, 48);
  assert.deepEqual(divisors(12), [1, 2, 3, 4, 6, 12]);
});

test('blockGeometry: a block size that does not tile the grid is refused with the sizes that would', () => {
  const err = throwsOH(() => blockGeometry({ gridH: 6, gridW: 8, blockH: 4, blockW: 4 }),
    'order.blockSize', '4x4', '6x8', 'gridH 6 is not a multiple of blockH 4', '1, 2, 3, 6', '1, 2, 4, 8');
  assert.equal(err.where, 'order.blockSize');
  assert.ok(!err.message.includes('gridW 8 is not'), err.message); // only the failing axis is blamed
  throwsOH(() => blockGeometry({ blockH: 3 }), 'order.blockSize', 'blockH 3', '1, 2, 4, 8');
  throwsOH(() => blockGeometry({ blockW: 0 }), 'order.blockSize', 'positive integers');
  throwsOH(() => blockGeometry({ blockH: 1.5 }), 'order.blockSize');
  throwsOH(() => blockGeometry({ gridH: -8 }), 'order.gridSize');
  throwsOH(() => blockGeometry({ gridW: NaN }), 'order.gridSize');
});

test('blockCells: raster inside the block; cellBlock and blockRowCol agree with it', () => {
  assert.deepEqual(blockCells(geo, 0), [0, 1, 8, 9]);
  assert.deepEqual(blockCells(geo, 5), [18, 19, 26, 27]); // block row 1, col 1
  assert.deepEqual(blockCells(geo, 15), [54, 55, 62, 63]);
  assert.deepEqual(blockRowCol(geo, 6), { row: 1, col: 2 });
  const g = blockGeometry({ gridH: 6, gridW: 8, blockH: 3, blockW: 2 });
  assert.deepEqual(blockCells(g, 5), [26, 27, 34, 35, 42, 43]); // block row 1 (rows 3-5), col 1 (cols 2-3)
  for (const gg of [geo, g]) {
    const owner = new Int32Array(gg.numTokens).fill(-1);
    for (let b = 0; b < gg.numBlocks; b++) {
      const cells = blockCells(gg, b);
      assert.equal(cells.length, gg.tokensPerBlock);
      assert.deepEqual(cells, [...cells].sort((x, y) => x - y)); // row-major cells: raster = ascending
      for (const c of cells) {
        assert.equal(owner[c], -1, `cell ${c} in two blocks`);
        owner[c] = b;
        assert.equal(cellBlock(gg, c), b);
      }
    }
    assert.ok(owner.every((b) => b >= 0), 'every cell belongs to a block');
  }
  throwsOH(() => blockCells(geo, 16), 'blockCells(block)', 'block 16', '0..15');
  throwsOH(() => cellBlock(geo, 64), 'cellBlock(cell)', 'cell 64');
});

test('blockDistance and neighbours on corners, edges and the centre', () => {
  assert.deepEqual(neighbours(geo, 0), [1, 4, 5]);
  assert.deepEqual(neighbours(geo, 3), [2, 6, 7]);
  assert.deepEqual(neighbours(geo, 12), [8, 9, 13]);
  assert.deepEqual(neighbours(geo, 15), [10, 11, 14]);
  assert.deepEqual(neighbours(geo, 1), [0, 2, 4, 5, 6]);
  assert.deepEqual(neighbours(geo, 5), [0, 1, 2, 4, 6, 8, 9, 10]);
  assert.equal(blockDistance(geo, 5, 5), 0);
  assert.equal(blockDistance(geo, 0, 5), 1);
  assert.equal(blockDistance(geo, 0, 10), 2);
  assert.equal(blockDistance(geo, 0, 3), 3);
  assert.equal(blockDistance(geo, 0, 15), 3);
  assert.equal(blockDistance(geo, 3, 12), 3);
  assert.equal(blockDistance(geo, 4, 7), 3); // same block row, opposite ends
  assert.equal(blockDistance(geo, 3, 4), 3); // consecutive in raster, but (0,3) and (1,0): no wrap-around
  for (let a = 0; a < geo.numBlocks; a++) {
    const expected: number[] = [];
    for (let b = 0; b < geo.numBlocks; b++) {
      assert.equal(blockDistance(geo, a, b), blockDistance(geo, b, a));
      if (blockDistance(geo, a, b) === 1) expected.push(b);
    }
    assert.deepEqual(neighbours(geo, a), expected);
  }
  throwsOH(() => blockDistance(geo, 0, -1), 'blockDistance(b)');
});

test('cellsOfBlockOrder: a permutation of all cells; token raster exactly for row blocks', () => {
  const cells = cellsOfBlockOrder(geo, rasterBlockOrder(geo));
  assert.ok(cells instanceof Int32Array);
  assert.ok(isPermutation(cells, 64));
  assert.deepEqual(Array.from(cells.slice(0, 8)), [0, 1, 8, 9, 2, 3, 10, 11]);
  assert.notDeepEqual(Array.from(cells), Array.from(rasterCells(geo))); // raster block order != token raster
  for (let s = 0; s < 5; s++) {
    const order = randomBlockOrder(geo, s);
    const c = cellsOfBlockOrder(geo, order);
    assert.ok(isPermutation(c, 64));
    for (let k = 0; k < 64; k++) assert.equal(cellBlock(geo, c[k]), order[Math.floor(k / 4)]);
  }
  const tr = tokenRasterGeometry();
  assert.equal(tr.blockH, 1);
  assert.equal(tr.blockW, 8);
  assert.equal(tr.numBlocks, 8);
  assert.deepEqual(Array.from(cellsOfBlockOrder(tr, rasterBlockOrder(tr))), Array.from(rasterCells(tr)));
  const rows = blockGeometry({ gridH: 6, gridW: 4, blockH: 1, blockW: 4 });
  assert.deepEqual(Array.from(cellsOfBlockOrder(rows, rasterBlockOrder(rows))), Array.from({ length: 24 }, (_, i) => i));
  // A non-raster order over row blocks is not token raster.
  assert.notDeepEqual(Array.from(cellsOfBlockOrder(tr, [1, 0, 2, 3, 4, 5, 6, 7])), Array.from(rasterCells(tr)));
  throwsOH(() => cellsOfBlockOrder(geo, [0, 1, 2]), 'cellsOfBlockOrder(order)', 'missing');
});

test('randomBlockOrder: a permutation, deterministic per seed, different across seeds', () => {
  const orders = Array.from({ length: 10 }, (_, s) => randomBlockOrder(geo, s));
  for (const o of orders) assert.ok(isPermutation(o, 16));
  assert.deepEqual(randomBlockOrder(geo, 3), orders[3]);
  assert.deepEqual(randomBlockOrder(geo, rng(3)), orders[3]); // a seed and rng(seed) agree
  assert.deepEqual(randomBlockOrder(geo, 'abc'), randomBlockOrder(geo, 'abc'));
  const distinct = new Set(orders.map((o) => o.join(',')));
  assert.equal(distinct.size, 10, 'ten seeds give ten different orders');
  assert.ok(!orders.some((o) => o.join(',') === rasterBlockOrder(geo).join(',')));
  // Draws from a shared stream advance it.
  const r = rng(7);
  assert.notDeepEqual(randomBlockOrder(geo, r), randomBlockOrder(geo, r));
});

test('validateBlockOrder: names duplicate, missing and out-of-range blocks', () => {
  assert.deepEqual(validateBlockOrder(geo, rasterBlockOrder(geo), 'x'), rasterBlockOrder(geo));
  assert.deepEqual(validateBlockOrder(geo, Int32Array.from([3, 2, 1, 0, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]), 'x')[0], 3);
  const dup = [0, 1, 1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];
  const e = throwsOH(() => validateBlockOrder(geo, dup, 'stage3.order'), 'stage3.order', 'duplicate: 1 (x2)', 'missing: 2');
  assert.equal(e.where, 'stage3.order');
  assert.ok(!e.message.includes('out of range'), e.message);
  const oor = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 16];
  throwsOH(() => validateBlockOrder(geo, oor, 'w'), 'out of range or not an integer: 16', 'missing: 15');
  throwsOH(() => validateBlockOrder(geo, [-1, 0.5, ...rasterBlockOrder(geo)], 'w'), '-1, 0.5', 'length 18 instead of 16');
  throwsOH(() => validateBlockOrder(geo, [2, 0], 'w'), 'length 2 instead of 16', 'missing: 1, 3, 4, 5');
  throwsOH(() => validateBlockOrder(geo, [], 'w'), 'missing: 0, 1');
});

test('visible state: emptyState, reveal (immutable), remainingBlocks, errors', () => {
  const s0 = emptyState(geo);
  assert.equal(s0.visible.length, 16);
  assert.deepEqual(remainingBlocks(s0), rasterBlockOrder(geo));
  const s1 = reveal(s0, 5);
  const s2 = reveal(s1, 0);
  assert.deepEqual(s2.sequence, [5, 0]);
  assert.deepEqual(Array.from(s2.visible.slice(0, 6)), [1, 0, 0, 0, 0, 1]);
  assert.deepEqual(s0.sequence, [], 'reveal does not change its input');
  assert.equal(s0.visible[5], 0);
  assert.deepEqual(s1.sequence, [5]);
  assert.equal(s1.visible[0], 0);
  assert.deepEqual(remainingBlocks(s2), [1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]);
  throwsOH(() => reveal(s2, 5), 'reveal(block)', 'block 5 is already visible', '5, 0');
  throwsOH(() => reveal(s2, 16), 'reveal(block)', 'out of range');
  const ps: PolicyState = { ...emptyState(geo), index: 4, classId: 2, context: 'ctx' };
  const ps1 = reveal(ps, 3);
  assert.equal(ps1.index, 4);
  assert.equal(ps1.classId, 2);
  assert.equal(ps1.context, 'ctx');
  const full = stateFromSequence(geo, randomBlockOrder(geo, 1));
  assert.ok(isComplete(full));
  assert.ok(!isComplete(s2));
  assert.deepEqual(remainingBlocks(full), []);
});

test('rollOutOrder: every policy gives valid permutations', async () => {
  const n = 6;
  const policies: OrderPolicy[] = [
    rasterPolicy(geo),
    randomPolicy(geo, 11),
    fixedOrderPolicy(geo, randomBlockOrder(geo, 5)),
    fixedOrderPolicy(geo, Array.from({ length: n }, (_, i) => randomBlockOrder(geo, 100 + i))),
    nearestToVisiblePolicy(geo, 0),
    nearestToVisiblePolicy(geo, 9, 'random'),
  ];
  for (const p of policies) {
    const orders = await rollOutOrder(p, geo, n);
    assert.equal(orders.length, n, p.name);
    for (const o of orders) assert.ok(isPermutation(o, 16), `${p.name}: ${o}`);
  }
  const raster = await rollOutOrder(rasterPolicy(geo), geo, 2);
  assert.deepEqual(raster, [rasterBlockOrder(geo), rasterBlockOrder(geo)]);
  const single = randomBlockOrder(geo, 5);
  assert.deepEqual(await rollOutOrder(fixedOrderPolicy(geo, single), geo, 3), [single, single, single]);
  const per = [randomBlockOrder(geo, 1), randomBlockOrder(geo, 2)];
  assert.deepEqual(await rollOutOrder(fixedOrderPolicy(geo, per), geo, 2), per);
  await rejectsOH(() => rollOutOrder(fixedOrderPolicy(geo, per), geo, 3), "policy 'fixed'", 'sample 2 has no order');
  throwsOH(() => fixedOrderPolicy(geo, [per[0], [0, 0]]), 'fixedOrderPolicy(orders[1])', 'duplicate: 0 (x2)');
  throwsOH(() => fixedOrderPolicy(geo, []), 'fixedOrderPolicy(orders)');
  assert.deepEqual(await rollOutOrder(rasterPolicy(geo), geo, 0), []);
  // Token raster baseline as a policy rollout.
  const tr = tokenRasterGeometry();
  const [o] = await rollOutOrder(rasterPolicy(tr), tr, 1);
  assert.deepEqual(Array.from(cellsOfBlockOrder(tr, o)), Array.from(rasterCells(tr)));
});

test('randomPolicy: deterministic per seed and sample index, independent of the batch', async () => {
  const a = await rollOutOrder(randomPolicy(geo, 42), geo, 5);
  const b = await rollOutOrder(randomPolicy(geo, 42), geo, 5);
  const c = await rollOutOrder(randomPolicy(geo, 43), geo, 5);
  const small = await rollOutOrder(randomPolicy(geo, 42), geo, 2);
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
  assert.deepEqual(small, a.slice(0, 2));
  assert.equal(new Set(a.map((o) => o.join(','))).size, 5, 'samples get different orders');
  for (let i = 0; i < 5; i++) assert.deepEqual(a[i], randomBlockOrder(geo, rng(seedFrom(42, 'random-policy', i))));
});

test('a policy returning a visible or invalid block is caught by name', async () => {
  const cheater: OrderPolicy = { name: 'cheater', nextBlocks: (states) => states.map(() => 0) };
  const err = await rejectsOH(() => rollOutOrder(cheater, geo, 2), "policy 'cheater'", 'chose block 0 for sample 0', 'already visible');
  assert.equal(err.where, "policy 'cheater'");
  const wild: OrderPolicy = { name: 'wild', nextBlocks: async (states) => states.map(() => 99) };
  await rejectsOH(() => rollOutOrder(wild, geo, 1), "policy 'wild'", 'chose block 99', 'not a block index');
  const short: OrderPolicy = { name: 'short', nextBlocks: () => [0] };
  await rejectsOH(() => rollOutOrder(short, geo, 3), "policy 'short'", 'returned 1 blocks for 3 states');
  const s = reveal(emptyState(geo), 7);
  throwsOH(() => checkPolicyChoice(s, 7, 'planner'), "policy 'planner'", 'block 7', 'already visible');
  throwsOH(() => checkPolicyChoice(s, 1.5, 'planner'), "policy 'planner'", 'block 1.5');
  checkPolicyChoice(s, 8, 'planner'); // a remaining block passes
  throwsOH(() => rasterPolicy(geo).nextBlocks([{ ...stateFromSequence(geo, rasterBlockOrder(geo)), index: 0 }]),
    "policy 'raster'", 'no next block');
  throwsOH(() => rasterPolicy(tokenRasterGeometry()).nextBlocks([{ ...emptyState(geo), index: 0 }]),
    "policy 'raster'", 'same block geometry');
});

test('nearestToVisiblePolicy: always a neighbour of the visible set, raster on ties', async () => {
  const p = nearestToVisiblePolicy(geo, 0);
  const at = (blocks: number[]) => p.nextBlocks([{ ...stateFromSequence(geo, blocks), index: 0 }]) as number[];
  assert.deepEqual(at([]), [0]); // raster-first
  assert.deepEqual(at([5]), [0]);
  assert.deepEqual(at([15]), [10]);
  assert.deepEqual(at([0, 15]), [1]);
  assert.deepEqual(at([0, 1, 4, 5]), [2]);
  assert.deepEqual(at([0, 1, 2, 3, 4, 5, 6, 7]), [8]);
  // Along whole rollouts (raster and random ties): every choice is at minimal distance, i.e. a neighbour.
  for (const ties of ['raster', 'random'] as const) {
    const q = nearestToVisiblePolicy(geo, 3, ties);
    const seen: Array<{ state: PolicyState; block: number }> = [];
    const spy: OrderPolicy = {
      name: 'spy',
      async nextBlocks(states) {
        const out = await q.nextBlocks(states);
        states.forEach((s, i) => seen.push({ state: s, block: out[i] }));
        return out;
      },
    };
    const orders = await rollOutOrder(spy, geo, 4);
    for (const o of orders) assert.ok(isPermutation(o, 16));
    for (const { state, block } of seen) {
      if (state.sequence.length === 0) {
        if (ties === 'raster') assert.equal(block, 0);
        continue;
      }
      const d = (a: number) => Math.min(...state.sequence.map((v) => blockDistance(geo, a, v)));
      const rem = remainingBlocks(state);
      const best = Math.min(...rem.map(d));
      assert.equal(d(block), best, `block ${block} is not at minimal distance from ${state.sequence}`);
      assert.equal(best, 1, 'on a connected grown region a free neighbour always exists');
      assert.ok(state.sequence.some((v) => neighbours(geo, v).includes(block)));
      if (ties === 'raster') assert.equal(block, rem.find((a) => d(a) === best));
    }
    if (ties === 'random') {
      assert.ok(new Set(orders.map((o) => o[0])).size > 1 || new Set(orders.map((o) => o.join())).size > 1,
        'random ties vary across samples');
    }
  }
  throwsOH(() => nearestToVisiblePolicy(geo, 0, 'middle' as never), 'nearestToVisiblePolicy(ties)', 'raster, random');
});

test('rollOutOrder: the policy sees only the tokens of visible blocks, and the class ids', async () => {
  const n = 3;
  const tokens = Array.from({ length: n }, (_, i) => Int32Array.from({ length: 64 }, (_, c) => (c * 7 + i) % 50));
  let calls = 0;
  const inner = randomPolicy(geo, 1);
  const spy: OrderPolicy = {
    name: 'spy',
    nextBlocks(states) {
      calls++;
      assert.equal(states.length, n);
      states.forEach((s, i) => {
        assert.equal(s.index, i);
        assert.equal(s.classId, 10 + i);
        assert.ok(s.tokens);
        for (let c = 0; c < 64; c++) {
          const shown = s.visible[cellBlock(geo, c)] === 1;
          assert.equal(s.tokens[c], shown ? tokens[i][c] : -1, `cell ${c}`);
        }
      });
      return inner.nextBlocks(states);
    },
  };
  const orders = await rollOutOrder(spy, geo, n, { tokens, classIds: [10, 11, 12] });
  assert.equal(calls, 16, 'one batched call per step');
  assert.deepEqual(orders, await rollOutOrder(randomPolicy(geo, 1), geo, n));
  await rejectsOH(() => rollOutOrder(spy, geo, n, { tokens: tokens.slice(0, 2) }), 'rollOutOrder(opts.tokens)', '2 token grids for 3 samples');
  await rejectsOH(() => rollOutOrder(spy, geo, 1, { tokens: [new Int32Array(63)] }), 'has 63 tokens');
  await rejectsOH(() => rollOutOrder(spy, geo, 1, { tokens: [new Int32Array(64).fill(-1)] }), 'negative ids');
  await rejectsOH(() => rollOutOrder(spy, geo, 2, { classIds: [1] }), 'rollOutOrder(opts.classIds)');
});

test('spiralInBlockOrder: the border clockwise from the top-left, then inward, on square and thin grids', () => {
  assert.deepEqual(spiralInBlockOrder(blockGeometry()), [0, 1, 2, 3, 7, 11, 15, 14, 13, 12, 8, 4, 5, 6, 10, 9]);
  // 2 x 3 blocks, 1 x 4 (one row), 3 x 1 (one column), 1 x 1: every block once, rings that are one block thin included.
  assert.deepEqual(spiralInBlockOrder(blockGeometry({ gridH: 4, gridW: 6, blockH: 2, blockW: 2 })), [0, 1, 2, 5, 4, 3]);
  assert.deepEqual(spiralInBlockOrder(blockGeometry({ gridH: 2, gridW: 8, blockH: 2, blockW: 2 })), [0, 1, 2, 3]);
  assert.deepEqual(spiralInBlockOrder(blockGeometry({ gridH: 6, gridW: 2, blockH: 2, blockW: 2 })), [0, 1, 2]);
  assert.deepEqual(spiralInBlockOrder(blockGeometry({ gridH: 2, gridW: 2, blockH: 2, blockW: 2 })), [0]);
  for (const [h, w] of [[8, 8], [6, 8], [8, 4], [10, 6]]) {
    const geo = blockGeometry({ gridH: h, gridW: w, blockH: 2, blockW: 2 });
    const order = spiralInBlockOrder(geo);
    validateBlockOrder(geo, order, 'spiral'); // a permutation of the blocks
    // Each step moves to a neighbouring block: a spiral has no jumps.
    for (let i = 1; i < order.length; i++) assert.equal(blockDistance(geo, order[i - 1], order[i]), 1, `${h}x${w} step ${i}`);
  }
});

// ---- bad input ----
// What a user (or a crash) can get wrong here. Each test asserts an
// OrderHeadError naming the file or config field with a fix (expectOH /
// rejectsOH), and that the temp folder is byte-identical afterwards, nothing
// added (untouched); both in tests/helpers.ts.
import { describe } from 'node:test';
import { expectOH, sandbox, untouched, useWasm } from '../../helpers';
import { tinyStage1 } from '../../fixtures/stage1-job';
import { trainStage1 } from '../../../lib/backbone/stage1';

describe('bad input', () => {
  test('a block size that does not tile the token grid names order.blockSize and the divisors', async () => {
    await useWasm();
    const root = sandbox();
    const job = tinyStage1();
    await untouched(root, () => {
      expectOH(() => blockGeometry({ gridH: 8, gridW: 8, blockH: 3, blockW: 2 }), 'order.blockSize', 'does not tile the 8x8 token grid', '1, 2, 4, 8');
      expectOH(() => trainStage1(root, 'bad', { ...job.cfg, blockH: 3 }, job.data, job.model), 'order.blockSize', 'blockH 3');
      expectOH(() => blockGeometry({ gridH: 4, gridW: 4, blockH: 0, blockW: 2 }), 'order.blockSize', 'positive integers');
    });
  });
});
