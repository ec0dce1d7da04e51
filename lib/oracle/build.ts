/**
 * Curriculum Stage 2: building an oracle dataset (METHOD.md §6.2; Algorithms
 * 1 and 2). For each part of this shard not written yet: draw the states of
 * its images (states.ts), score every candidate block of each state with the
 * frozen Stage 1 backbone (`scoreStatesPerWeight`, lib/oracle/utility.ts)
 * under the primary labeling and, on a subset of images, the compare
 * labelings, and write the part atomically with one line in build-log.jsonl.
 * Labelings of one reading share one set of backbone passes (the weight only
 * turns token losses into u_extrap), so the compare images cost one scoring
 * per other reading, however many weights are compared.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ensure } from '../runtime/errors';
import { appendJsonLine, readJsonLines, removeStaleTempFiles, writeFileAtomic } from '../runtime/atomic';
import { encodeSafetensors, SafeTensor } from '../runtime/safetensors';
import { Progress, yieldToEventLoop } from '../runtime/progress';
import { BlockGeometry } from '../order';
import { GPT, disposeGPT } from '../backbone/gpt';
import { loadBackboneWithInfo } from '../backbone/stage1';
import { TokenSplit } from '../tokenizer/cache';
import { scoreStatesPerWeight, OracleItem, OracleWeightsConfig, Reading, StateScore } from './utility';
import { WeightName } from './weights';
import { compareLabelings, OracleDatasetConfig } from './dataset-config';
import { ORACLE_BUILD_LOG, ORACLE_DATASET_FORMAT, parseShard, partCount, partFileName, partImages, ShardSpec, shardParts } from './layout';
import { stateSequence } from './states';
import { OracleManifest, prepareOracleDataset } from './manifest';
import { checkPart, identityHash, splitOf } from './dataset-files';

/**
 * The scorer's signature (lib/oracle/utility.ts `scoreStatesPerWeight`): the
 * states under one reading and several weights, one StateScore list per
 * weight. Tests inject fakes.
 */
export type OracleScorer = (m: GPT, geo: BlockGeometry, items: OracleItem[], cfg: OracleWeightsConfig) => StateScore[][];

export interface BuildOracleOptions {
  /** `i/N` or {index, count}: label only this shard's parts. Default: everything. */
  shard?: string | ShardSpec;
  /** Progress bar factory (the notebook passes session.progress); counts states. */
  progress?: (opts: { total: number; label: string }) => Progress;
  /** Called after each part file is written. */
  onPart?: (info: OraclePartInfo) => void;
  /** Replace the scorer (tests). */
  scorer?: OracleScorer;
  /** The backbone, if already loaded (it must be the config's checkpoint); otherwise loaded and disposed here. */
  model?: GPT;
  /** Stop after writing this many parts (tests). */
  maxParts?: number;
  /** Sleep this long after each part (lets tests kill a run between parts; leaves CPU to others). */
  pauseMs?: number;
}

export interface OraclePartInfo {
  part: number;
  parts: number;
  images: { start: number; end: number };
  states: number;
  seconds: number;
  statesPerSecond: number;
}

export interface BuildOracleResult {
  dir: string;
  shard: ShardSpec;
  /** Parts of this shard: written now, found complete, and in total. */
  written: number;
  skipped: number;
  shardParts: number;
  /** States scored now (primary labeling; compare labelings not counted). */
  states: number;
  /** Compare labels written now, in states (one per state and compare labeling). */
  compareStates: number;
  /**
   * States scored now for compare labelings of readings other than the primary's
   * (one per state and reading): the backbone work the compare labelings cost.
   * Compare labelings of the primary's reading reuse its passes and add none.
   */
  compareScoredStates: number;
  seconds: number;
  /** Primary states per second of wall time (compare labelings included in the time). */
  statesPerSecond: number;
  /** Temp files of dead processes removed before starting. */
  removedTempFiles: string[];
  manifest: OracleManifest;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Check a scorer's answer for one state: lengths, labels in range and not visible. */
function checkScore(sc: StateScore | undefined, geo: BlockGeometry, visible: readonly number[], what: string): StateScore {
  const where = `oracle scorer (${what})`;
  ensure(sc && sc.u instanceof Float32Array && sc.u.length === geo.numBlocks && sc.uExtrap instanceof Float32Array && sc.uExtrap.length === geo.numBlocks,
    `returned utility vectors of the wrong type or length (expected Float32Array(${geo.numBlocks}))`, where, 'return one StateScore per item, u and uExtrap of length numBlocks');
  ensure(sc.tokenLoss instanceof Float32Array && sc.tokenLoss.length === geo.numTokens,
    `returned tokenLoss of length ${sc.tokenLoss?.length} (expected ${geo.numTokens})`, where, 'return l_j(S) for every cell, NaN on visible cells');
  const vis = new Set(visible);
  for (const [name, a] of [['aStar', sc.aStar], ['aStarExtrap', sc.aStarExtrap]] as const) {
    ensure(Number.isInteger(a) && a >= 0 && a < geo.numBlocks && !vis.has(a), `returned ${name} = ${a}, which is not a hidden block`, where,
      'return the argmax over the blocks not in the visible set');
  }
  return sc;
}

interface StateRef { image: number; s: number; sequence: number[] }

/**
 * Label the states of one range of images under one reading and several
 * weights (one set of backbone passes). Returns per weight one StateScore per
 * ref, in order. Progress is ticked per scored chunk.
 */
async function scoreRefs(scorer: OracleScorer, m: GPT, geo: BlockGeometry, split: TokenSplit, refs: StateRef[], reading: Reading, weights: WeightName[],
  perCall: number, passBatch: number, onChunk: (n: number) => void): Promise<StateScore[][]> {
  const T = geo.numTokens;
  const out: StateScore[][] = weights.map(() => new Array(refs.length));
  // Score in order of |S| (stable), so that a call holds few sizes and the scorer packs equal sizes into one pass.
  const order = refs.map((_, i) => i).sort((x, y) => refs[x].sequence.length - refs[y].sequence.length || x - y);
  for (let i = 0; i < order.length; i += perCall) {
    const idx = order.slice(i, i + perCall);
    const chunk = idx.map((j) => refs[j]);
    const items: OracleItem[] = chunk.map((r) => ({
      tokens: split.tokens.slice(r.image * T, (r.image + 1) * T),
      classId: split.labels[r.image],
      visible: r.sequence.slice(),
    }));
    const scores = scorer(m, geo, items, { reading, weights, batch: passBatch });
    ensure(Array.isArray(scores) && scores.length === weights.length && scores.every((s) => Array.isArray(s) && s.length === items.length),
      `returned ${Array.isArray(scores) ? scores.map((s) => (Array.isArray(s) ? s.length : typeof s)).join(' + ') : typeof scores} scores ` +
        `for ${weights.length} weight(s) x ${items.length} states`,
      'oracle scorer', 'return one StateScore list per weight, each with one StateScore per item, in order');
    weights.forEach((w, k) => chunk.forEach((r, j) => {
      out[k][idx[j]] = checkScore(scores[k][j], geo, r.sequence, `${reading}/${w}, image ${r.image}, state ${r.s}`);
    }));
    onChunk(chunk.length);
    await yieldToEventLoop();
  }
  return out;
}

/** The tensors of one labeling, `prefix` '' for the primary, `cmp<k>.` for compare k. */
function labelTensors(prefix: string, scores: (StateScore | undefined)[], nb: number, T: number, withTokenLoss: boolean): Record<string, SafeTensor> {
  const n = scores.length;
  const u = new Float32Array(n * nb).fill(NaN), ux = new Float32Array(n * nb).fill(NaN);
  const a = new Int32Array(n).fill(-1), ax = new Int32Array(n).fill(-1), lRest = new Float32Array(n).fill(NaN);
  const has = new Uint8Array(n);
  const tl = withTokenLoss ? new Float32Array(n * T).fill(NaN) : undefined;
  scores.forEach((sc, i) => {
    if (!sc) return;
    has[i] = 1;
    u.set(sc.u, i * nb);
    ux.set(sc.uExtrap, i * nb);
    a[i] = sc.aStar;
    ax[i] = sc.aStarExtrap;
    lRest[i] = sc.lRest;
    tl?.set(sc.tokenLoss, i * T);
  });
  const t: Record<string, SafeTensor> = {
    [`${prefix}u`]: { dtype: 'F32', shape: [n, nb], data: u },
    [`${prefix}uExtrap`]: { dtype: 'F32', shape: [n, nb], data: ux },
    [`${prefix}aStar`]: { dtype: 'I32', shape: [n], data: a },
    [`${prefix}aStarExtrap`]: { dtype: 'I32', shape: [n], data: ax },
    [`${prefix}lRest`]: { dtype: 'F32', shape: [n], data: lRest },
  };
  if (tl) t[`${prefix}tokenLoss`] = { dtype: 'F32', shape: [n, T], data: tl };
  if (prefix) t[`${prefix}has`] = { dtype: 'U8', shape: [n], data: has };
  return t;
}

/**
 * Build (or continue) the oracle dataset in `dir`: label every part of this
 * shard that is not written yet, each part written atomically when complete.
 * A killed build continues where it stopped when called again with the same
 * config; a different config is refused. Call `mergeOracleDataset(dir)` once
 * every shard is done.
 */
export async function buildOracleDataset(dir: string, cfg: OracleDatasetConfig, opts: BuildOracleOptions = {}): Promise<BuildOracleResult> {
  const shard = parseShard(opts.shard);
  const prep = prepareOracleDataset(dir, cfg);
  const { manifest, cache, geo } = prep;
  const split = splitOf(cache, cfg.split);
  const K = partCount(cfg);
  const { first, end } = shardParts(cfg, shard);
  const myParts = new Set(Array.from({ length: end - first }, (_, j) => partFileName(first + j, K)));
  const removedTempFiles = removeStaleTempFiles(dir, { mine: (target) => myParts.has(target) });
  const idHash = identityHash(manifest.identity);
  const compare = compareLabelings(cfg);
  // Labelings of one reading share their backbone passes: the weight enters only the last step
  // (token losses -> u_extrap). The primary's reading scores every state with the primary's weight
  // and its compare weights; every other reading scores the compare images with its weights.
  const sameReading = (r: Reading) => compare.map((c, k) => ({ ...c, k })).filter((c) => c.reading === r);
  const otherReadings = [...new Set(compare.map((c) => c.reading))].filter((r) => r !== cfg.reading);
  const nb = geo.numBlocks, T = geo.numTokens, S = cfg.statesPerImage;

  const todo: number[] = [];
  let skipped = 0;
  for (let k = first; k < end; k++) {
    const file = path.join(dir, partFileName(k, K));
    if (fs.existsSync(file)) {
      checkPart(file, idHash, k, cfg);
      skipped++;
    } else todo.push(k);
  }
  const parts = opts.maxParts !== undefined ? todo.slice(0, opts.maxParts) : todo;
  const statesTodo = parts.reduce((acc, k) => { const r = partImages(cfg, k); return acc + (r.end - r.start) * S; }, 0);
  const bar = opts.progress?.({ total: statesTodo, label: `oracle ${shard.index}/${shard.count}` });
  const t0 = Date.now();
  let states = 0, compareStates = 0, compareScoredStates = 0, written = 0;
  let model = opts.model;
  const ownModel = !model && parts.length > 0;
  if (ownModel) model = loadBackboneWithInfo(cfg.backbone, { gridH: geo.gridH, gridW: geo.gridW }).model;
  const scorer = opts.scorer ?? scoreStatesPerWeight;
  try {
    for (const k of parts) {
      const tp = Date.now();
      const range = partImages(cfg, k);
      const refs: StateRef[] = [];
      for (let i = range.start; i < range.end; i++) for (let s = 0; s < S; s++) refs.push({ image: i, s, sequence: stateSequence(cfg, geo, i, s) });
      const n = refs.length;
      const cmpRefs = refs.filter((r) => r.image % cfg.compareEvery === 0);
      const cmpOf = new Set(cmpRefs);
      const tensors: Record<string, SafeTensor> = {};
      /** Compare labeling k's tensors from scores of `scored` refs (NaN and has = 0 on the others). */
      const putCompare = (k: number, scored: StateRef[], scores: StateScore[]) => {
        const byRef = new Map(scored.map((r, j) => [r, scores[j]]));
        Object.assign(tensors, labelTensors(`cmp${k}.`, refs.map((r) => (cmpOf.has(r) ? byRef.get(r) : undefined)), nb, T, false));
        compareStates += cmpRefs.length;
      };
      const own = sameReading(cfg.reading);
      const [main, ...ownCompare] = await scoreRefs(scorer, model!, geo, split, refs, cfg.reading, [cfg.weight, ...own.map((c) => c.weight)],
        cfg.statesPerCall, cfg.passBatch, (c) => {
          states += c;
          const sec = (Date.now() - t0) / 1000;
          bar?.tick(c, { 'states/s': sec > 0 ? Number((states / sec).toPrecision(3)) : 0 });
        });
      Object.assign(tensors, labelTensors('', main, nb, T, true));
      own.forEach((c, j) => putCompare(c.k, refs, ownCompare[j]));
      for (const reading of otherReadings) {
        const of = sameReading(reading);
        const scored = await scoreRefs(scorer, model!, geo, split, cmpRefs, reading, of.map((c) => c.weight), cfg.statesPerCall, cfg.passBatch,
          (x) => { compareScoredStates += x; });
        of.forEach((c, j) => putCompare(c.k, cmpRefs, scored[j]));
      }
      const image = new Int32Array(n), state = new Int32Array(n), size = new Int32Array(n), classId = new Int32Array(n);
      const sequence = new Int32Array(n * nb).fill(-1), visible = new Uint8Array(n * nb);
      refs.forEach((r, i) => {
        image[i] = r.image;
        state[i] = r.s;
        size[i] = r.sequence.length;
        classId[i] = split.labels[r.image];
        r.sequence.forEach((b, j) => { sequence[i * nb + j] = b; visible[i * nb + b] = 1; });
      });
      Object.assign(tensors, {
        image: { dtype: 'I32', shape: [n], data: image },
        state: { dtype: 'I32', shape: [n], data: state },
        size: { dtype: 'I32', shape: [n], data: size },
        classId: { dtype: 'I32', shape: [n], data: classId },
        sequence: { dtype: 'I32', shape: [n, nb], data: sequence },
        visible: { dtype: 'U8', shape: [n, nb], data: visible },
      } satisfies Record<string, SafeTensor>);
      const file = path.join(dir, partFileName(k, K));
      writeFileAtomic(file, encodeSafetensors(tensors, {
        format: ORACLE_DATASET_FORMAT, kind: 'part', identity: idHash, part: String(k), parts: String(K),
        image_start: String(range.start), image_end: String(range.end), states: String(n),
      }));
      written++;
      const seconds = (Date.now() - tp) / 1000;
      const info: OraclePartInfo = { part: k, parts: K, images: range, states: n, seconds, statesPerSecond: seconds > 0 ? n / seconds : NaN };
      appendJsonLine(path.join(dir, ORACLE_BUILD_LOG), {
        ...info, compareStates: cmpRefs.length * compare.length, compareScoredStates: cmpRefs.length * otherReadings.length,
        shard: `${shard.index}/${shard.count}`, pid: process.pid, time: new Date().toISOString(),
      });
      opts.onPart?.(info);
      if (opts.pauseMs) await sleep(opts.pauseMs);
    }
  } finally {
    if (ownModel && model) disposeGPT(model);
  }
  const seconds = (Date.now() - t0) / 1000;
  bar?.done({ 'states/s': seconds > 0 ? Number((states / seconds).toPrecision(3)) : 0 });
  return {
    dir, shard, written, skipped, shardParts: end - first, states, compareStates, compareScoredStates, seconds,
    statesPerSecond: seconds > 0 ? states / seconds : NaN, removedTempFiles, manifest,
  };
}

/** One line of a dataset's build log. */
export interface OracleBuildLogLine extends OraclePartInfo {
  shard: string;
  pid: number;
  time: string;
  /** Compare labels written for this part (states x compare labelings). */
  compareStates: number;
  /** States scored for compare labelings of other readings than the primary's (absent in logs of builds before it was recorded). */
  compareScoredStates?: number;
}

/** The per-part timing lines of a dataset's builds (states, seconds, states/s, shard). */
export function readOracleBuildLog(dir: string): OracleBuildLogLine[] {
  const file = path.join(dir, ORACLE_BUILD_LOG);
  if (!fs.existsSync(file)) return [];
  return readJsonLines<OracleBuildLogLine>(file, { warn: () => {} }).rows;
}
