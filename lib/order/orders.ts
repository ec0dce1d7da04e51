/**
 * Generation orders as block sequences: a block order is a permutation of
 * 0..numBlocks-1; the token decode order it implies (`cellsOfBlockOrder`)
 * visits each block's cells in raster order inside the block.
 */
import { ensure, OrderHeadError } from '../runtime/errors';
import { Rng, rng as makeRng } from '../runtime/seed';
import { BlockGeometry, blockCells } from './geometry';

/** Blocks 0..numBlocks-1: raster over the block grid (token raster only when blockH = 1, blockW = gridW). */
export function rasterBlockOrder(geo: BlockGeometry): number[] {
  return Array.from({ length: geo.numBlocks }, (_, i) => i);
}

/**
 * A uniformly random block order. Pass an `Rng` to draw from an existing
 * stream, or a seed (number or string) for `rng(seed)`; the same seed gives
 * the same order.
 */
export function randomBlockOrder(geo: BlockGeometry, random: Rng | number | string): number[] {
  const r = typeof random === 'object' ? random : makeRng(random);
  return r.shuffle(rasterBlockOrder(geo));
}

/** At most `max` values for a message, with a count of the rest. */
function listForMessage(values: readonly number[], max = 12): string {
  const shown = values.slice(0, max).join(', ');
  return values.length > max ? `${shown}, ... (${values.length - max} more)` : shown;
}

/**
 * Check that `order` is a permutation of 0..numBlocks-1 and return it as a
 * plain array. The error names `where` and lists the duplicate, missing and
 * out-of-range (or non-integer) blocks.
 */
export function validateBlockOrder(geo: BlockGeometry, order: ArrayLike<number>, where: string): number[] {
  ensure(
    order != null && typeof order.length === 'number',
    `block order is not an array (got ${typeof order})`,
    where,
    `pass a permutation of 0..${geo.numBlocks - 1}`,
  );
  const list = Array.from(order);
  const seen = new Uint32Array(geo.numBlocks);
  const bad: number[] = [];
  for (const b of list) {
    if (typeof b === 'number' && Number.isInteger(b) && b >= 0 && b < geo.numBlocks) seen[b]++;
    else bad.push(b);
  }
  const duplicates: string[] = [];
  const missing: number[] = [];
  for (let b = 0; b < geo.numBlocks; b++) {
    if (seen[b] > 1) duplicates.push(`${b} (x${seen[b]})`);
    if (seen[b] === 0) missing.push(b);
  }
  if (bad.length === 0 && duplicates.length === 0 && missing.length === 0) return list;
  const issues: string[] = [];
  if (list.length !== geo.numBlocks) issues.push(`length ${list.length} instead of ${geo.numBlocks}`);
  if (bad.length) issues.push(`out of range or not an integer: ${listForMessage(bad)}`);
  if (duplicates.length) issues.push(`duplicate: ${duplicates.slice(0, 12).join(', ')}${duplicates.length > 12 ? ', ...' : ''}`);
  if (missing.length) issues.push(`missing: ${listForMessage(missing)}`);
  throw new OrderHeadError(
    `block order is not a permutation of the ${geo.numBlocks} blocks 0..${geo.numBlocks - 1} ` +
      `(${geo.blocksY}x${geo.blocksX} blocks of ${geo.blockH}x${geo.blockW} tokens): ${issues.join('; ')}`,
    where,
    `list every block 0..${geo.numBlocks - 1} exactly once`,
  );
}

/**
 * The token decode order of a block order: the cells of each block in turn,
 * raster inside each block. Length numTokens, a permutation of the cells.
 */
export function cellsOfBlockOrder(geo: BlockGeometry, order: ArrayLike<number>): Int32Array {
  const blocks = validateBlockOrder(geo, order, 'cellsOfBlockOrder(order)');
  const out = new Int32Array(geo.numTokens);
  let k = 0;
  for (const b of blocks) for (const c of blockCells(geo, b)) out[k++] = c;
  return out;
}

/**
 * The outside-in spiral over the block grid: the border clockwise from the
 * top-left block (top row left to right, right column down, bottom row right
 * to left, left column up), then the next ring inward, down to the centre.
 * On 4 x 4 blocks: 0 1 2 3 7 11 15 14 13 12 8 4 5 6 10 9.
 *
 * Why this order: it is the shape the planner's average order took in our
 * last default run (the outside first), and RAR's "spiral-in", the worst
 * fixed final order of its ablation (METHOD.md §8); the crossover study's
 * fixed-order arm anneals to it (lib/study).
 */
export function spiralInBlockOrder(geo: BlockGeometry): number[] {
  const out: number[] = [];
  let top = 0, bottom = geo.blocksY - 1, left = 0, right = geo.blocksX - 1;
  const at = (row: number, col: number) => out.push(row * geo.blocksX + col);
  while (top <= bottom && left <= right) {
    for (let c = left; c <= right; c++) at(top, c);
    for (let r = top + 1; r <= bottom; r++) at(r, right);
    // A ring one row or one column thin has no way back: its bottom row or left column is already taken.
    if (top < bottom) for (let c = right - 1; c >= left; c--) at(bottom, c);
    if (left < right) for (let r = bottom - 1; r > top; r--) at(r, left);
    top++; bottom--; left++; right--;
  }
  return out;
}

/**
 * Token raster order: cells 0..numTokens-1. It equals
 * `cellsOfBlockOrder(geo, rasterBlockOrder(geo))` exactly when blockH = 1 or
 * blockW = gridW (for example `tokenRasterGeometry`), not for 2 x 2 blocks.
 */
export function rasterCells(geo: BlockGeometry): Int32Array {
  const out = new Int32Array(geo.numTokens);
  for (let i = 0; i < out.length; i++) out[i] = i;
  return out;
}
