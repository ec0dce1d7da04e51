/**
 * NLL of a backbone under the order *types* Stage 1 is judged by: token raster
 * (LlamaGen's native order), raster block order, and random block orders (one
 * seeded permutation per image). The gap between random and raster is the
 * order-robustness the planner needs (METHOD.md §6.1).
 */
import { GPT } from './gpt';
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
