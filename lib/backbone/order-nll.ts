/**
 * NLL of a backbone under the order *types* Stage 1 is judged by: token raster
 * (LlamaGen's native order), raster block order, and random block orders (one
 * seeded permutation per image). The gap between random and raster is the
 * order-robustness the planner needs (METHOD.md §6.1).
 */
import { disposeGPT, GPT } from './gpt';
import { loadBackboneWithInfo } from './stage1';
import { exactNll, NllResult } from './nll';
import { seqLen } from './config';
import { BlockGeometry, cellsOfBlockOrder, randomBlockOrder, rasterBlockOrder } from '../order';
import { rng, seedFrom } from '../runtime/seed';

export const ORDER_TYPES = ['raster', 'block-raster', 'random-blocks'] as const;
export type OrderType = (typeof ORDER_TYPES)[number];

/** Decode orders (N x T cells) of one order type; random orders are seeded per image. */
export function orderCells(type: OrderType, geo: BlockGeometry, n: number, seed = 0): Int32Array {
  const T = geo.numTokens;
  const cells = new Int32Array(n * T);
  const r = rng(seedFrom(seed, 'eval-orders', type));
  for (let i = 0; i < n; i++) {
    if (type === 'raster') for (let t = 0; t < T; t++) cells[i * T + t] = t;
    else cells.set(cellsOfBlockOrder(geo, type === 'block-raster' ? rasterBlockOrder(geo) : randomBlockOrder(geo, r)), i * T);
  }
  return cells;
}

export interface OrderNllRow { order: OrderType; natsPerToken: number; bitsPerToken: number; n: number }

/** NLL (nats and bits per token) of `n` images under each order type. */
export function nllByOrderType(m: GPT, geo: BlockGeometry, data: { tokens: Int32Array; labels: Int32Array }, n: number,
  types: readonly OrderType[] = ORDER_TYPES, seed = 0): OrderNllRow[] {
  const T = seqLen(m.cfg);
  const grids = data.tokens.subarray(0, n * T), classes = data.labels.subarray(0, n);
  return types.map((order) => {
    const r: NllResult = exactNll(m, grids, classes, orderCells(order, geo, n, seed));
    return { order, natsPerToken: r.natsPerToken, bitsPerToken: r.bitsPerToken, n };
  });
}

export interface CheckpointNllRow {
  model: string;
  step: number;
  /** Share of random orders when the checkpoint was saved. */
  r: number;
  /** Bits per token under each order type. */
  bits: Record<OrderType, number>;
  /** random-blocks minus raster, bits per token: how much order costs this checkpoint. */
  gap: number;
  checkpoint: string;
}

/**
 * NLL by order type for every checkpoint of several runs, on the first `n`
 * test images. Loads one backbone at a time (and disposes it).
 */
export function checkpointNllTable(runs: { model: string; checkpoints: string[] }[], geo: BlockGeometry,
  data: { tokens: Int32Array; labels: Int32Array }, n: number, onCheckpoint?: () => void): CheckpointNllRow[] {
  const rows: CheckpointNllRow[] = [];
  for (const run of runs) {
    for (const checkpoint of run.checkpoints) {
      const { model: m, step, r } = loadBackboneWithInfo(checkpoint);
      try {
        const bits = Object.fromEntries(nllByOrderType(m, geo, data, n).map((x) => [x.order, x.bitsPerToken])) as Record<OrderType, number>;
        rows.push({ model: run.model, step, r, bits, gap: bits['random-blocks'] - bits.raster, checkpoint });
      } finally {
        disposeGPT(m);
      }
      onCheckpoint?.();
    }
  }
  return rows;
}
