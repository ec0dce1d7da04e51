/**
 * `node dist/bench/oracle-bench.js`: speed of the oracle (lib/oracle) on the
 * default backbone (`small` on an 8 x 8 grid, vocab 512, 10 classes; random
 * init: speed does not depend on the weights), 2 x 2 blocks (16 blocks),
 * states of every size |S| = 0..15, both readings. In one process:
 *
 * - fast:      `scoreStates` (prefix on a KV cache, batched continuations);
 * - reference: `scoreStatesReference` (plain loop, one full causal forward per
 *              candidate; one-step: one full sequence per (candidate, query));
 * - one-step only, "per-candidate pass": one masked pass per candidate (and
 *   baseline) over the whole sequence from an empty cache, batch 1: no KV
 *   cache, no batching, but queries share their candidate's pass. The fairer
 *   baseline for the one-step reading: what the fast path saves by caching and
 *   batching alone. (Teacher-forced: the reference already is that.)
 *
 * Prints a table (states/s per path and ratio, also by |S| range) and writes
 * bench/results/oracle.json. Also checks that the paths agree (max |Δu|).
 *
 * Env: ORACLE_BENCH_PER_SIZE (fast-path states per size, default 4),
 * ORACLE_BENCH_REF_PER_SIZE (reference states per size, default 1),
 * ORACLE_BENCH_BATCH (fast-path sequences per pass, default the library's),
 * ORACLE_BENCH_READINGS (comma list, default both), ORACLE_BENCH_SIZES
 * (comma list of |S|, default all 0..15; both paths use the same sizes, so
 * their states/s are comparable), ORDERHEAD_BACKEND.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../lib/runtime/backend';
import { gptConfig } from '../lib/backbone/config';
import { createGPT, emptyCache, extend, GPT, numParams, tokenNll } from '../lib/backbone/gpt';
import { blockCells, blockGeometry, BlockGeometry } from '../lib/order';
import { rng } from '../lib/runtime/seed';
import {
  DEFAULT_ORACLE_BATCH, OracleItem, Reading, READINGS, scoreStates, scoreStatesReference, StateScore,
} from '../lib/oracle';

const perSize = Number(process.env.ORACLE_BENCH_PER_SIZE ?? 4);
const refPerSize = Number(process.env.ORACLE_BENCH_REF_PER_SIZE ?? 1);
const batch = Number(process.env.ORACLE_BENCH_BATCH ?? DEFAULT_ORACLE_BATCH);
const readings = (process.env.ORACLE_BENCH_READINGS?.split(',') ?? READINGS) as Reading[];

function items(geo: BlockGeometry, sizes: number[], n: number, seed: number): OracleItem[] {
  const r = rng(seed);
  return sizes.flatMap((size) => Array.from({ length: n }, () => ({
    tokens: new Int32Array(geo.numTokens).map(() => r.int(512)),
    classId: r.int(10),
    visible: r.shuffle(Array.from({ length: geo.numBlocks }, (_, i) => i)).slice(0, size),
  })));
}

/**
 * One-step scores by one masked pass per candidate (and per baseline) from an
 * empty cache, batch 1: the same slots as the fast path's prefix +
 * continuation, recomputed for every candidate. Returns u per state.
 */
function perCandidateOneStep(m: GPT, geo: BlockGeometry, its: OracleItem[]): Float32Array[] {
  const cellsOf = Array.from({ length: geo.numBlocks }, (_, b) => blockCells(geo, b));
  const run = (B: number, L: number, inputs: number[], inCells: number[], tgtCells: number[], targets: number[], mask?: Float32Array) => {
    const nll = tf.tidy(() => {
      const out = extend(m, emptyCache(m), {
        B, L, inputs: new Int32Array(inputs), inCells: new Int32Array(inCells), tgtCells: new Int32Array(tgtCells), mask,
      }, false);
      return tokenNll(out.logits, tf.tensor2d(targets, [B, L], 'int32'));
    });
    const v = nll.dataSync();
    nll.dispose();
    return v;
  };
  return its.map((it) => {
    const x = it.tokens, sCells = it.visible.flatMap((b) => cellsOf[b]);
    const R = Array.from({ length: geo.numBlocks }, (_, b) => b).filter((b) => !it.visible.includes(b));
    const rCells = R.flatMap((b) => cellsOf[b]);
    /** L_rest after the context `ctx` (cells) for query cells `qs`: one pass [class, ctx tokens..., queries]. */
    const lRest = (ctx: number[], qs: number[]): number => {
      if (qs.length === 0) return 0;
      if (ctx.length === 0) { // each query is a class slot: one-slot sequences
        const v = run(qs.length, 1, qs.map(() => it.classId), qs.map(() => -1), qs, qs.map((j) => x[j]));
        let s = 0;
        for (let i = 0; i < v.length; i++) s += v[i];
        return s;
      }
      const P = ctx.length, L = P + qs.length;
      const inputs = [it.classId, ...ctx.slice(0, P - 1).map((c) => x[c]), ...qs.map(() => x[ctx[P - 1]])];
      const inCells = [-1, ...ctx.slice(0, P - 1), ...qs.map(() => ctx[P - 1])];
      const tgt = [...ctx, ...qs];
      const mask = new Float32Array(L * L).fill(-1e9);
      for (let r = 0; r < L; r++) { for (let c = 0; c < Math.min(r + 1, P); c++) mask[r * L + c] = 0; mask[r * L + r] = 0; }
      const v = run(1, L, inputs, inCells, tgt, tgt.map((c) => x[c]), mask);
      let s = 0;
      for (let i = P; i < L; i++) s += v[i];
      return s;
    };
    const base = lRest(sCells, rCells);
    const u = new Float32Array(geo.numBlocks).fill(NaN);
    for (const a of R) u[a] = base - lRest([...sCells, ...cellsOf[a]], rCells.filter((c) => !cellsOf[a].includes(c)));
    return u;
  });
}

function maxAbsDiff(a: Float32Array[], b: Float32Array[]): number {
  let d = 0;
  a.forEach((x, i) => x.forEach((v, k) => { if (!Number.isNaN(v)) d = Math.max(d, Math.abs(v - b[i][k])); }));
  return d;
}

function timed<T>(f: () => T): { out: T; s: number } {
  const t0 = performance.now();
  const out = f();
  return { out, s: (performance.now() - t0) / 1000 };
}

const RANGES: [number, number][] = [[0, 3], [4, 7], [8, 11], [12, 15]];

async function main() {
  const backend = await initBackend();
  const cfg = gptConfig('small', { gridH: 8, gridW: 8, vocabSize: 512, numClasses: 10 });
  const geo = blockGeometry({ gridH: 8, gridW: 8, blockH: 2, blockW: 2 });
  const m = createGPT(cfg, 0);
  const sizes = process.env.ORACLE_BENCH_SIZES?.split(',').map(Number) ?? Array.from({ length: geo.numBlocks }, (_, i) => i);
  console.log(`backend ${backend.kind}; backbone small ${(numParams(m.params) / 1e6).toFixed(2)}M params, 8x8 grid, ` +
    `${geo.numBlocks} blocks of 2x2; fast batch ${batch}; states: ${perSize}/size (fast), ${refPerSize}/size (reference), |S| = ${sizes.join(',')}`);
  const rows: Record<string, unknown>[] = [];
  for (const reading of readings) {
    const oc = { reading, weight: 'uniform' as const, batch };
    scoreStates(m, geo, items(geo, [0, 8, 15], 1, 1), oc); // warm-up (kernel setup)
    scoreStatesReference(m, geo, items(geo, [15], 1, 1), oc);
    const before = tf.memory().numTensors;
    const fastItems = items(geo, sizes, perSize, 2);
    const fast = timed(() => scoreStates(m, geo, fastItems, oc));
    const refItems = items(geo, sizes, refPerSize, 3);
    const ref = timed(() => refItems.map((it) => timed(() => scoreStatesReference(m, geo, [it], oc)[0])));
    const leaked = tf.memory().numTensors - before;
    // Agreement on the reference's states (fast path re-run on them, untimed).
    const fastOnRef = scoreStates(m, geo, refItems, oc);
    const diff = maxAbsDiff(fastOnRef.map((s) => s.u), ref.out.map((r) => r.out.u));
    // Per-|S| range: fast states/s from a separate timed run per range (packs stay within a range).
    const byRange = RANGES.map(([lo, hi]) => {
      const fi = fastItems.filter((it) => it.visible.length >= lo && it.visible.length <= hi);
      const ft = fi.length ? timed(() => scoreStates(m, geo, fi, oc)).s : NaN;
      const rs = ref.out.filter((_, i) => refItems[i].visible.length >= lo && refItems[i].visible.length <= hi);
      const rt = rs.reduce((a, r) => a + r.s, 0);
      return { range: `${lo}-${hi}`, fastPerS: fi.length / ft, refPerS: rs.length ? rs.length / rt : NaN };
    });
    const fastPerS = fastItems.length / fast.s, refPerS = refItems.length / ref.s;
    const row: Record<string, unknown> = {
      reading, fastStates: fastItems.length, fastSeconds: fast.s, fastPerS,
      refStates: refItems.length, refSeconds: ref.s, refPerS, ratio: fastPerS / refPerS, maxAbsDiffU: diff, leaked, byRange,
    };
    if (reading === 'one-step') {
      const pc = timed(() => perCandidateOneStep(m, geo, refItems));
      row.perCandidatePerS = refItems.length / pc.s;
      row.perCandidateSeconds = pc.s;
      row.ratioVsPerCandidate = fastPerS / (refItems.length / pc.s);
      row.maxAbsDiffUPerCandidate = maxAbsDiff(pc.out, fastOnRef.map((s: StateScore) => s.u));
    }
    rows.push(row);
    console.log(`${reading}: done (fast ${fast.s.toFixed(1)} s, reference ${ref.s.toFixed(1)} s)`);
  }
  const f = (v: unknown, d = 1) => (typeof v === 'number' && Number.isFinite(v) ? v.toFixed(d) : '-');
  console.log('\n| reading | fast (states/s) | reference (states/s) | fast / reference | per-candidate pass (states/s) | fast / per-candidate | max abs diff u |');
  console.log('|---|---:|---:|---:|---:|---:|---:|');
  for (const r of rows) {
    console.log(`| ${r.reading} | ${f(r.fastPerS)} | ${f(r.refPerS, 2)} | ${f(r.ratio)}x | ${f(r.perCandidatePerS, 2)} | ${r.ratioVsPerCandidate ? f(r.ratioVsPerCandidate) + 'x' : '-'} | ${(r.maxAbsDiffU as number).toExponential(1)} |`);
  }
  console.log('\nby |S| (fast / reference states per second):');
  console.log('| reading | ' + RANGES.map(([lo, hi]) => `|S| ${lo}-${hi}`).join(' | ') + ' |');
  console.log('|---|' + RANGES.map(() => '---:').join('|') + '|');
  for (const r of rows) {
    const br = r.byRange as { fastPerS: number; refPerS: number }[];
    console.log(`| ${r.reading} | ` + br.map((b) => `${f(b.fastPerS)} / ${f(b.refPerS, 2)} (${f(b.fastPerS / b.refPerS)}x)`).join(' | ') + ' |');
  }
  const leaks = rows.map((r) => r.leaked as number);
  console.log(`\ntensors leaked: ${leaks.join(', ')}`);
  const result = {
    date: new Date().toISOString(), backend: backend.kind, model: 'small', grid: '8x8', blocks: '16 of 2x2', vocabSize: 512,
    weight: 'uniform', batch, perSize, refPerSize, sizes, rows,
  };
  const dir = path.join(__dirname, '../../bench/results');
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'oracle.json'), JSON.stringify(result, null, 2) + '\n');
}

main().catch((e) => { console.error(e instanceof Error ? e.message : e); process.exit(1); });
