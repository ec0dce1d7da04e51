/**
 * The planner-order cache (METHOD.md §6, matched budgets and Stage 5): the
 * block order the trained planner chooses for each of some training images,
 * rolled out teacher-forced on the image's true tokens with the features of
 * the frozen backbone C it was trained on (rollOutOnGroundTruth). The
 * continuation annealed to the planner and Stage 5's L_AR train on these
 * orders; the evaluation decodes that arm with the same planner reading the
 * same C, so training and inference orders come from one function.
 *
 * Which images: exactly those the continuation will decode in their target
 * order (plannerOrderImages replays its draws from C). A run that draws an
 * image the cache lacks stops with an error naming the cache file (stage1.ts);
 * it never falls back to another order. Stage 5 draws its L_AR images from the
 * cached ones (restrictToOrders).
 *
 * The file is JSON written atomically and keyed by the planner's weights, R,
 * C's file fingerprint and the tokenizer: a cache from another planner or
 * backbone is refused, never silently used.
 */
import * as fs from 'node:fs';
import { GPT } from '../backbone/gpt';
import { seqLen } from '../backbone/config';
import { rollOutOnGroundTruth } from '../backbone/nll';
import { TargetOrderTable, TokenData } from '../backbone/stage1';
import { imagesOf } from '../backbone/regime';
import { BlockGeometry } from '../order';
import { writeFileAtomic } from '../runtime/atomic';
import { weightsFingerprint } from '../runtime/checkpoint';
import { ensure, OrderHeadError } from '../runtime/errors';
import { LatentSteps, Planner } from './orderhead';
import { plannerPolicy } from './policy';

const FORMAT = 'orderhead-planner-orders/1';
const MAKER = 'notebooks/06_stage5_joint_tuning.ipynb';

/** What fixes a cache's orders. */
export interface PlannerOrderIdentity {
  /** weightsFingerprint of the planner, and its R. */
  planner: string;
  latentSteps: number;
  /** fileFingerprint of backbone C's checkpoint (the features the planner reads). */
  backbone: string;
  /** The token cache's tokenizer fingerprint (the images' tokens). */
  tokenizer: string;
}

interface PlannerOrderFile extends PlannerOrderIdentity {
  format: string;
  numBlocks: number;
  image: number[];
  blockOrders: number[];
  seconds: number;
}

export interface BuildPlannerOrdersOptions {
  file: string;
  planner: Planner;
  R: LatentSteps;
  /** Backbone C and its checkpoint's file fingerprint. */
  backbone: GPT;
  backboneFingerprint: string;
  geo: BlockGeometry;
  data: TokenData;
  /** Training images to cover (ascending), e.g. plannerOrderImages(armConfig, ...). */
  images: Int32Array;
  /** Images per rollout call. */
  batch?: number;
  onBatch?: (done: number, total: number) => void;
}

/**
 * Build (or reuse) the cache at `file`: a file with the same identity that
 * covers every image of `images` is reused as is; otherwise the orders are
 * rolled out and the file is replaced atomically. Returns the table and
 * whether it was reused.
 */
export async function buildPlannerOrders(o: BuildPlannerOrdersOptions): Promise<{ table: TargetOrderTable; reused: boolean; seconds: number }> {
  const identity: PlannerOrderIdentity = { planner: weightsFingerprint(o.planner.params), latentSteps: o.R, backbone: o.backboneFingerprint, tokenizer: o.data.tokenizer ?? 'unknown' };
  if (fs.existsSync(o.file)) {
    try {
      const table = loadPlannerOrders(o.file, identity);
      const have = new Set(table.image);
      if (o.images.every((i) => have.has(i))) return { table, reused: true, seconds: 0 };
    } catch (err) {
      if (!(err instanceof OrderHeadError)) throw err; // another identity: rebuilt below, the old file replaced only once the new one is complete
    }
  }
  const T = seqLen(o.backbone.cfg), nb = o.geo.numBlocks, batch = o.batch ?? 256;
  const policy = plannerPolicy(o.planner, o.backbone, o.geo, o.R);
  const blockOrders = new Int32Array(o.images.length * nb);
  const t0 = Date.now();
  for (let lo = 0; lo < o.images.length; lo += batch) {
    const idx = o.images.subarray(lo, Math.min(o.images.length, lo + batch));
    const grids = new Int32Array(idx.length * T), classes = new Int32Array(idx.length);
    idx.forEach((img, k) => { grids.set(o.data.tokens.subarray(img * T, (img + 1) * T), k * T); classes[k] = o.data.labels[img]; });
    const orders = await rollOutOnGroundTruth(o.backbone, grids, classes, policy, o.geo);
    orders.forEach((ord, k) => blockOrders.set(ord, (lo + k) * nb));
    o.onBatch?.(lo + idx.length, o.images.length);
  }
  const seconds = (Date.now() - t0) / 1000;
  const body: PlannerOrderFile = { format: FORMAT, ...identity, numBlocks: nb, image: Array.from(o.images), blockOrders: Array.from(blockOrders), seconds };
  writeFileAtomic(o.file, JSON.stringify(body));
  return { table: { image: Int32Array.from(o.images), blockOrders, numBlocks: nb, fingerprint: cacheFingerprint(identity), file: o.file }, reused: false, seconds };
}

const cacheFingerprint = (id: PlannerOrderIdentity) => `planner ${id.planner} R=${id.latentSteps} on backbone ${id.backbone}, tokens ${id.tokenizer}`;

/**
 * Read a cache, refusing one made by another planner, R, backbone or
 * tokenizer (each named, with the notebook that rebuilds it).
 */
export function loadPlannerOrders(file: string, expect: PlannerOrderIdentity): TargetOrderTable {
  ensure(fs.existsSync(file), 'no planner-order cache here', file, `run ${MAKER} in this profile first (it builds the cache from the trained planner)`);
  let body: PlannerOrderFile;
  try {
    body = JSON.parse(fs.readFileSync(file, 'utf8')) as PlannerOrderFile;
  } catch (e) {
    throw new OrderHeadError(`not readable as JSON (${(e as Error).message})`, file, `delete it and rerun ${MAKER}: the cache is rebuilt`);
  }
  ensure(body.format === FORMAT, `format '${body.format}', expected '${FORMAT}'`, file, `delete it and rerun ${MAKER}`);
  for (const k of ['planner', 'latentSteps', 'backbone', 'tokenizer'] as const) {
    ensure(body[k] === expect[k], `made with ${k} ${String(body[k])}, this run uses ${String(expect[k])}`, `${file} (${k})`,
      `the cache belongs to another ${k === 'tokenizer' ? 'token cache' : k === 'backbone' ? 'backbone C' : 'planner'}: rerun ${MAKER}, which rebuilds it for this one`);
  }
  ensure(Array.isArray(body.image) && Array.isArray(body.blockOrders) && body.blockOrders.length === body.image.length * body.numBlocks,
    `${body.image?.length} images but ${body.blockOrders?.length} order entries for ${body.numBlocks} blocks`, file, `the file is damaged: delete it and rerun ${MAKER}`);
  return { image: Int32Array.from(body.image), blockOrders: Int32Array.from(body.blockOrders), numBlocks: body.numBlocks, fingerprint: cacheFingerprint(expect), file };
}

/**
 * The planner's average order: blocks sorted by their mean position over the
 * cached orders (ties: lower block first). The fixed non-raster arm trains on
 * it, so that arm shares the planner's typical order but not its adaptivity.
 */
export function averageOrder(table: TargetOrderTable): { order: number[]; meanPosition: number[] } {
  const nb = table.numBlocks, n = table.image.length;
  ensure(n > 0, 'the planner-order cache is empty', table.file, `rerun ${MAKER}`);
  const pos = new Float64Array(nb);
  for (let k = 0; k < n; k++) for (let t = 0; t < nb; t++) pos[table.blockOrders[k * nb + t]] += t / n;
  const order = Array.from({ length: nb }, (_, b) => b).sort((a, b) => pos[a] - pos[b] || a - b);
  return { order, meanPosition: Array.from(pos) };
}

/** The cached images of `data` as their own token data (image k of the result is table.image[k]), with their orders: Stage 5's L_AR set. */
export function restrictToOrders(data: TokenData, table: TargetOrderTable): TokenData {
  for (const img of table.image) {
    ensure(img >= 0 && img < data.n, `image ${img} is outside the ${data.n} training images`, table.file, `the cache was made for another split: rerun ${MAKER}`);
  }
  const { tokens, labels, n } = imagesOf(data, table.image);
  return { tokens, labels, n, tokenizer: data.tokenizer, targetOrders: { ...table, image: Int32Array.from({ length: n }, (_, k) => k) } };
}
