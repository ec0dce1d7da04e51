/**
 * `node dist/bench/oracle-bench.js`: speed of the oracle (lib/oracle) on the
 * default backbone (`small` on an 8 x 8 grid, vocab 512, 10 classes; random
 * init: speed does not depend on the weights), 2 x 2 blocks (16 blocks),
 * states of every size |S| = 0..15, every reading. In one process:
 *
 * - fast:      `scoreStates` (prefix on a KV cache, batched continuations);
 * - reference: `scoreStatesReference` (plain loop, one full causal forward per
 *              candidate; one-step: one full sequence per (candidate, query);
 *              block-marginal: one per (candidate, block));
 * - one-step only, "per-candidate pass": one masked pass per candidate (and
 *   baseline) over the whole sequence from an empty cache, batch 1: no KV
 *   cache, no batching, but queries share their candidate's pass. The fairer
 *   baseline for the one-step reading: what the fast path saves by caching and
 *   batching alone. (Teacher-forced: the reference already is that.)
 *
 * Prints a table (states/s per path and ratio, also by |S| range) and writes
 * bench/results/oracle.json. Also checks that the paths agree (max |Δu|).
 * `npm run bench` runs the same functions, fast and reference each in its own
 * child process (peak RSS per path), next to its other measurements.
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
import { createGPT, GPT, numParams, tokenNll } from '../lib/backbone/gpt';
import { emptyCache, extend } from '../lib/backbone/kv-decoder';
import { blockCells, blockGeometry, BlockGeometry } from '../lib/order';
import { rng } from '../lib/runtime/seed';
import {
  DEFAULT_ORACLE_BATCH, OracleItem, Reading, READINGS, scoreStates, scoreStatesReference, 
} from '../lib/oracle';

export const perSize = Number(process.env.ORACLE_BENCH_PER_SIZE ?? 4);
export const refPerSize = Number(process.env.ORACLE_BENCH_REF_PER_SIZE ?? 1);
export const batch = Number(process.env.ORACLE_BENCH_BATCH ?? DEFAULT_ORACLE_BATCH);
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

export const RANGES: [number, number][] = [[0, 3], [4, 7], [8, 11], [12, 15]];

/** What both the fast and the reference runs measure on: the `small` backbone on 8 x 8 tokens, 16 blocks of 2 x 2. */
export interface OracleBenchSetup { m: GPT; geo: BlockGeometry; sizes: number[] }

export function oracleBenchSetup(): OracleBenchSetup {
  const cfg = gptConfig('small', { gridH: 8, gridW: 8, vocabSize: 512, numClasses: 10 });
  const geo = blockGeometry({ gridH: 8, gridW: 8, blockH: 2, blockW: 2 });
  const sizes = process.env.ORACLE_BENCH_SIZES?.split(',').map(Number) ?? Array.from({ length: geo.numBlocks }, (_, i) => i);
  return { m: createGPT(cfg, 0), geo, sizes };
}

/** The states each path scores (seeded: the same in every process). */
export const fastItems = (st: OracleBenchSetup) => items(st.geo, st.sizes, perSize, 2);
export const refItems = (st: OracleBenchSetup) => items(st.geo, st.sizes, refPerSize, 3);

export interface FastRun {
  reading: Reading; fastStates: number; fastSeconds: number; fastPerS: number; leaked: number;
  /** Fast states/s per |S| range (a separate timed run per range). */
  byRange: { range: string; fastPerS: number }[];
  /** u of the reference path's states, by the fast path (untimed): for the agreement check. */
  uOnRef: Float32Array[];
}

/** The fast path (`scoreStates`) on every reading. */
export function runOracleFast(st: OracleBenchSetup): FastRun[] {
  const { m, geo } = st;
  return readings.map((reading) => {
    const oc = { reading, weight: 'uniform' as const, batch };
    scoreStates(m, geo, items(geo, [0, 8, 15], 1, 1), oc); // warm-up (kernel setup)
    const before = tf.memory().numTensors;
    const fi = fastItems(st);
    const fast = timed(() => scoreStates(m, geo, fi, oc));
    const leaked = tf.memory().numTensors - before;
    const byRange = RANGES.map(([lo, hi]) => {
      const sub = fi.filter((it) => it.visible.length >= lo && it.visible.length <= hi);
      const ft = sub.length ? timed(() => scoreStates(m, geo, sub, oc)).s : NaN;
      return { range: `${lo}-${hi}`, fastPerS: sub.length / ft };
    });
    const uOnRef = scoreStates(m, geo, refItems(st), oc).map((s) => s.u);
    return { reading, fastStates: fi.length, fastSeconds: fast.s, fastPerS: fi.length / fast.s, leaked, byRange, uOnRef };
  });
}

export interface ReferenceRun {
  reading: Reading; refStates: number; refSeconds: number; refPerS: number; leaked: number;
  byRange: { range: string; refPerS: number }[];
  u: Float32Array[];
  /** One-step only: one masked pass per candidate (see the file comment). */
  perCandidatePerS?: number; perCandidateSeconds?: number; uPerCandidate?: Float32Array[];
}

/** The plain reference path (`scoreStatesReference`), and for one-step the per-candidate pass. */
export function runOracleReference(st: OracleBenchSetup): ReferenceRun[] {
  const { m, geo } = st;
  return readings.map((reading) => {
    const oc = { reading, weight: 'uniform' as const, batch };
    scoreStatesReference(m, geo, items(geo, [15], 1, 1), oc); // warm-up
    const before = tf.memory().numTensors;
    const ri = refItems(st);
    const ref = timed(() => ri.map((it) => timed(() => scoreStatesReference(m, geo, [it], oc)[0])));
    const leaked = tf.memory().numTensors - before;
    const byRange = RANGES.map(([lo, hi]) => {
      const rs = ref.out.filter((_, i) => ri[i].visible.length >= lo && ri[i].visible.length <= hi);
      return { range: `${lo}-${hi}`, refPerS: rs.length ? rs.length / rs.reduce((a, r) => a + r.s, 0) : NaN };
    });
    const run: ReferenceRun = { reading, refStates: ri.length, refSeconds: ref.s, refPerS: ri.length / ref.s, leaked, byRange, u: ref.out.map((r) => r.out.u) };
    if (reading === 'one-step') {
      const pc = timed(() => perCandidateOneStep(m, geo, ri));
      run.perCandidatePerS = ri.length / pc.s;
      run.perCandidateSeconds = pc.s;
      run.uPerCandidate = pc.out;
    }
    return run;
  });
}

/** Rows of the oracle table (both paths of one reading side by side). */
export function oracleRows(fast: FastRun[], ref: ReferenceRun[]): Record<string, unknown>[] {
  return fast.map((f) => {
    const r = ref.find((x) => x.reading === f.reading)!;
    const row: Record<string, unknown> = {
      reading: f.reading, fastStates: f.fastStates, fastSeconds: f.fastSeconds, fastPerS: f.fastPerS,
      refStates: r.refStates, refSeconds: r.refSeconds, refPerS: r.refPerS, ratio: f.fastPerS / r.refPerS,
      maxAbsDiffU: maxAbsDiff(f.uOnRef, r.u), leaked: f.leaked + r.leaked,
      byRange: f.byRange.map((b, i) => ({ range: b.range, fastPerS: b.fastPerS, refPerS: r.byRange[i].refPerS })),
    };
    if (r.perCandidatePerS !== undefined) {
      row.perCandidatePerS = r.perCandidatePerS;
      row.perCandidateSeconds = r.perCandidateSeconds;
      row.ratioVsPerCandidate = f.fastPerS / r.perCandidatePerS;
      row.maxAbsDiffUPerCandidate = maxAbsDiff(r.uPerCandidate!, f.uOnRef);
    }
    return row;
  });
}

/** The two oracle tables (markdown lines). */
export function oracleTables(rows: Record<string, unknown>[]): string[] {
  const f = (v: unknown, d = 1) => (typeof v === 'number' && Number.isFinite(v) ? v.toFixed(d) : '-');
  const out = ['| reading | fast (states/s) | reference (states/s) | fast / reference | per-candidate pass (states/s) | fast / per-candidate | max abs diff u |',
    '|---|---:|---:|---:|---:|---:|---:|'];
  for (const r of rows) {
    out.push(`| ${r.reading} | ${f(r.fastPerS)} | ${f(r.refPerS, 2)} | ${f(r.ratio)}x | ${f(r.perCandidatePerS, 2)} | ${r.ratioVsPerCandidate ? f(r.ratioVsPerCandidate) + 'x' : '-'} | ${(r.maxAbsDiffU as number).toExponential(1)} |`);
  }
  out.push('', 'by |S| (fast / reference states per second):', '| reading | ' + RANGES.map(([lo, hi]) => `|S| ${lo}-${hi}`).join(' | ') + ' |',
    '|---|' + RANGES.map(() => '---:').join('|') + '|');
  for (const r of rows) {
    const br = r.byRange as { fastPerS: number; refPerS: number }[];
    out.push(`| ${r.reading} | ` + br.map((b) => `${f(b.fastPerS)} / ${f(b.refPerS, 2)} (${f(b.fastPerS / b.refPerS)}x)`).join(' | ') + ' |');
  }
  return out;
}

async function main() {
  const backend = await initBackend();
  const st = oracleBenchSetup();
  console.log(`backend ${backend.kind}; backbone small ${(numParams(st.m.params) / 1e6).toFixed(2)}M params, 8x8 grid, ` +
    `${st.geo.numBlocks} blocks of 2x2; fast batch ${batch}; states: ${perSize}/size (fast), ${refPerSize}/size (reference), |S| = ${st.sizes.join(',')}`);
  const fast = runOracleFast(st);
  console.log(`fast path done (${fast.map((r) => `${r.reading} ${r.fastSeconds.toFixed(1)} s`).join(', ')})`);
  const ref = runOracleReference(st);
  console.log(`reference path done (${ref.map((r) => `${r.reading} ${r.refSeconds.toFixed(1)} s`).join(', ')})`);
  const rows = oracleRows(fast, ref);
  console.log('\n' + oracleTables(rows).join('\n'));
  console.log(`\ntensors leaked: ${rows.map((r) => r.leaked).join(', ')}`);
  const result = {
    date: new Date().toISOString(), backend: backend.kind, model: 'small', grid: '8x8', blocks: '16 of 2x2', vocabSize: 512,
    weight: 'uniform', batch, perSize, refPerSize, sizes: st.sizes, rows,
  };
  const dir = path.join(__dirname, '../../bench/results');
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'oracle.json'), JSON.stringify(result, null, 2) + '\n');
}

if (require.main === module) main().catch((e) => { console.error(e instanceof Error ? e.message : e); process.exit(1); });
