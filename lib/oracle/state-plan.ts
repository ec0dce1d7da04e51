/**
 * What both oracle paths share (utility.ts: the fast path and the method's
 * definitions; reference.ts: the plain reference): the readings, the scorer's
 * config, input and output types, input validation, the per-state plan
 * (R in the reference order, S's and R's cells) and the step from token
 * losses to L_rest, u, u_extrap and the labels.
 */
import { GPT } from '../backbone/gpt';
import { BlockGeometry, blockCells, cellBlock } from '../order';
import { ensure, oneOf, OrderHeadError } from '../runtime/errors';
import { BlockWeights, candidateWeights, WeightName, WEIGHTS } from './weights';

export type Reading = 'block-marginal' | 'teacher-forced' | 'one-step';

/** The three readings of l_j(S) (see the file comment), the primary first. */
export const READINGS: readonly Reading[] = Object.freeze(['block-marginal', 'teacher-forced', 'one-step'] as const);

/** The primary reading (METHOD.md §3): in distribution and free of any reference order. */
export const PRIMARY_READING: Reading = 'block-marginal';

export interface OracleConfig {
  /** How l_j is measured. */
  reading: Reading;
  /** w(j, a) of u_extrap, a function of block distance (weights.ts). */
  weight: WeightName;
  /** Max sequences per batched pass (fast path); default 64. */
  batch?: number;
}

/**
 * Several weights of one reading (utility.ts `scoreStatesPerWeight`): u_extrap
 * is a weighted sum of the same token losses under every weight, so one set of
 * backbone passes serves them all.
 */
export interface OracleWeightsConfig {
  reading: Reading;
  /** One StateScore list per weight, in this order. */
  weights: readonly WeightName[];
  batch?: number;
}

export interface OracleItem {
  /** The image's ground-truth token grid, numTokens, indexed by cell (row-major). */
  tokens: Int32Array;
  /** Its class id (0..numClasses-1; numClasses = the null class is accepted too). */
  classId: number;
  /** S as blocks, in the order they were revealed (may be empty; not all blocks). */
  visible: number[];
}

export interface StateScore {
  /** L_rest(S) = Σ_{j∈R} l_j(S), nats. */
  lRest: number;
  /** numTokens: l_j(S) in nats; NaN on visible cells. */
  tokenLoss: Float32Array;
  /** numBlocks: u(a|S) = L_rest(S) - L_rest(S ∪ {a}); NaN on visible blocks. */
  u: Float32Array;
  /** numBlocks: Σ_{j∈R\a} w(j,a)[l_j(S) - l_j(S∪{a})]; NaN on visible blocks. */
  uExtrap: Float32Array;
  /** argmax_a u (lowest block index on ties). */
  aStar: number;
  /** argmax_a uExtrap (lowest block index on ties). */
  aStarExtrap: number;
}

export const DEFAULT_ORACLE_BATCH = 64;

// ---------------------------------------------------------------------------
// Validation and per-state plans

/** Everything about one state that both paths need. */
export interface Plan {
  item: OracleItem;
  /** R, ascending: the reference (raster block) order. */
  remaining: number[];
  /** The cells of S in reveal order, raster inside each block. */
  sCells: number[];
  /** Cells of R in the reference order. */
  rCells: number[];
}

export interface Checked { batch: number; reading: Reading; weights: WeightName[] }

/** Check a scorer's inputs; a config with `weights` names `oracle.weights[k]` in its errors, one with `weight`, `oracle.weight`. */
export function checkInputs(m: GPT, geo: BlockGeometry, items: OracleItem[], cfg: OracleConfig | OracleWeightsConfig): Checked {
  ensure(cfg != null && typeof cfg === 'object', 'no oracle config given', 'oracle config',
    `pass { reading: ${READINGS.map((r) => `'${r}'`).join(' | ')}, weight: ${WEIGHTS.map((w) => `'${w}'`).join(' | ')} }`);
  const reading = oneOf(cfg.reading, READINGS, 'oracle.reading');
  let weights: WeightName[];
  if ('weights' in cfg) {
    ensure(Array.isArray(cfg.weights) && cfg.weights.length > 0, `weights is ${JSON.stringify(cfg.weights)}`, 'oracle.weights',
      `pass a non-empty list of weight names (${WEIGHTS.join(', ')})`);
    weights = cfg.weights.map((w, k) => oneOf(w, WEIGHTS, `oracle.weights[${k}]`));
  } else weights = [oneOf(cfg.weight, WEIGHTS, 'oracle.weight')];
  const batch = cfg.batch ?? DEFAULT_ORACLE_BATCH;
  ensure(Number.isInteger(batch) && batch >= 1, `batch must be a positive integer, got ${cfg.batch}`, 'oracle.batch',
    `use a positive number of sequences per pass (default ${DEFAULT_ORACLE_BATCH})`);
  if (m.cfg.gridH !== geo.gridH || m.cfg.gridW !== geo.gridW) {
    throw new OrderHeadError(
      `the backbone's token grid is ${m.cfg.gridH}x${m.cfg.gridW} (backbone.gridH x backbone.gridW), ` +
        `the block geometry's ${geo.gridH}x${geo.gridW} (order.gridSize)`,
      'backbone.gridH/gridW vs order.gridSize',
      'score with the geometry of the backbone\'s grid: blockGeometry({ gridH: m.cfg.gridH, gridW: m.cfg.gridW, blockH, blockW })',
    );
  }
  ensure(Array.isArray(items), `items is not an array (got ${typeof items})`, 'items', 'pass an array of { tokens, classId, visible }');
  items.forEach((it, i) => checkItem(m, geo, it, i));
  return { batch, reading, weights };
}

function checkItem(m: GPT, geo: BlockGeometry, it: OracleItem, i: number): void {
  const where = `items[${i}]`;
  ensure(it != null && typeof it === 'object', `item is ${it}`, where, 'pass { tokens, classId, visible }');
  const toks = it.tokens;
  ensure(toks != null && typeof toks.length === 'number' && toks.length === geo.numTokens,
    `tokens has length ${toks?.length}, the ${geo.gridH}x${geo.gridW} grid has ${geo.numTokens} cells`,
    `${where}.tokens`, 'pass the image\'s whole token grid, indexed by cell (row-major)');
  for (let c = 0; c < toks.length; c++) {
    const v = toks[c];
    if (!Number.isInteger(v) || v < 0 || v >= m.cfg.vocabSize) {
      throw new OrderHeadError(`token ${v} at cell ${c} is not in 0..${m.cfg.vocabSize - 1}`, `${where}.tokens`,
        'pass tokens from the backbone\'s codebook (backbone.vocabSize)');
    }
  }
  ensure(Number.isInteger(it.classId) && it.classId >= 0 && it.classId <= m.cfg.numClasses,
    `class ${it.classId} is not in 0..${m.cfg.numClasses} (numClasses = the null class)`, `${where}.classId`,
    `pass the image's class id, 0..${m.cfg.numClasses - 1}`);
  ensure(Array.isArray(it.visible), `visible is not an array (got ${typeof it.visible})`, `${where}.visible`,
    'pass S as a list of block indices in reveal order');
  const seen = new Set<number>();
  for (const b of it.visible) {
    ensure(Number.isInteger(b) && b >= 0 && b < geo.numBlocks,
      `block ${b} is out of range: a ${geo.blocksY}x${geo.blocksX} block grid has blocks 0..${geo.numBlocks - 1}`,
      `${where}.visible`, `list blocks in 0..${geo.numBlocks - 1} (raster order over the block grid)`);
    ensure(!seen.has(b), `block ${b} is listed twice (visible: ${it.visible.join(', ')})`, `${where}.visible`,
      'list each visible block once, in reveal order');
    seen.add(b);
  }
  ensure(seen.size < geo.numBlocks, `all ${geo.numBlocks} blocks are visible: there is no candidate to score`,
    `${where}.visible`, `pass states with at most ${geo.numBlocks - 1} visible blocks`);
}

/** Per-geometry tables. */
export interface GeoTables { cellsOf: number[][]; blockOf: Int32Array }

export function geoTables(geo: BlockGeometry): GeoTables {
  const cellsOf = Array.from({ length: geo.numBlocks }, (_, b) => blockCells(geo, b));
  const blockOf = new Int32Array(geo.numTokens);
  for (let c = 0; c < geo.numTokens; c++) blockOf[c] = cellBlock(geo, c);
  return { cellsOf, blockOf };
}

export function makePlan(geo: BlockGeometry, t: GeoTables, item: OracleItem): Plan {
  const vis = new Uint8Array(geo.numBlocks);
  for (const b of item.visible) vis[b] = 1;
  const remaining: number[] = [];
  for (let b = 0; b < geo.numBlocks; b++) if (!vis[b]) remaining.push(b);
  return {
    item, remaining,
    sCells: item.visible.flatMap((b) => t.cellsOf[b]),
    rCells: remaining.flatMap((b) => t.cellsOf[b]),
  };
}

// ---------------------------------------------------------------------------
// Losses -> scores (shared by both paths)

/**
 * Token losses gathered for one state: base[j] = l_j(S) for j ∈ R;
 * cand[a*T + j] = l_j(S ∪ {a}) for j ∈ R \ a. NaN elsewhere.
 */
export interface Losses { base: Float64Array; cand: Float64Array }

export function newLosses(geo: BlockGeometry): Losses {
  return { base: new Float64Array(geo.numTokens).fill(NaN), cand: new Float64Array(geo.numBlocks * geo.numTokens).fill(NaN) };
}

function argmaxOver(v: Float32Array, among: number[]): number {
  let best = among[0];
  for (const a of among) if (v[a] > v[best]) best = a;
  return best;
}

/**
 * The step from one state's token losses to its scores under weight `w`
 * (blockWeightTable): L_rest, u, u_extrap (with w(·, a | S) per candidate,
 * normalised over R \ a for the mean weights: weights.ts `candidateWeights`)
 * and both labels. Both paths end here, so they agree for every weight.
 */
export function finalize(geo: BlockGeometry, t: GeoTables, w: BlockWeights, plan: Plan, ls: Losses): StateScore {
  const T = geo.numTokens, n = geo.numBlocks;
  const tokenLoss = new Float32Array(T).fill(NaN);
  let lRest = 0;
  for (const j of plan.rCells) { tokenLoss[j] = ls.base[j]; lRest += ls.base[j]; }
  const u = new Float32Array(n).fill(NaN), uExtrap = new Float32Array(n).fill(NaN);
  for (const a of plan.remaining) {
    const wa = candidateWeights(w, a, plan.remaining);
    let rest = 0, ext = 0;
    for (const j of plan.rCells) {
      if (t.blockOf[j] === a) continue;
      const la = ls.cand[a * T + j];
      rest += la;
      ext += wa[t.blockOf[j]] * (ls.base[j] - la);
    }
    u[a] = lRest - rest;
    uExtrap[a] = ext;
  }
  return { lRest, tokenLoss, u, uExtrap, aStar: argmaxOver(u, plan.remaining), aStarExtrap: argmaxOver(uExtrap, plan.remaining) };
}

