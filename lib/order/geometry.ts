/**
 * Block geometry (METHOD.md section 2): the H x W token grid cut into
 * bh x bw blocks.
 *
 * Numbering conventions, used everywhere in `lib/order`:
 * - cells (token positions) are numbered row-major: `cell = row * gridW + col`;
 * - blocks are numbered in raster order over the block grid:
 *   `block = blockRow * blocksX + blockCol`;
 * - the tokens of a block are always decoded in raster order inside the block
 *   (`blockCells`). Block order is learned, in-block order is not.
 *
 * Token raster order as a special case: a geometry with `blockH = 1` and
 * `blockW = gridW` has one block per token row, so the block raster order
 * (`rasterBlockOrder`) decodes exactly the cells 0, 1, ..., numTokens - 1, the
 * LlamaGen raster baseline (`tokenRasterGeometry`). (More generally, any
 * geometry with blockH = 1 or blockW = gridW has this property.) With the default 2 x 2
 * blocks, the raster *block* order is NOT token raster order: it decodes
 * 0, 1, 8, 9, 2, 3, 10, 11, ... on an 8 x 8 grid.
 */
import { ensure, OrderHeadError } from '../runtime/errors';

export interface BlockGeometry {
  /** Token grid height (rows of tokens). */
  readonly gridH: number;
  /** Token grid width (columns of tokens). */
  readonly gridW: number;
  /** Block height in tokens. */
  readonly blockH: number;
  /** Block width in tokens. */
  readonly blockW: number;
  /** Rows of blocks: gridH / blockH. */
  readonly blocksY: number;
  /** Columns of blocks: gridW / blockW. */
  readonly blocksX: number;
  /** blocksY * blocksX. */
  readonly numBlocks: number;
  /** blockH * blockW. */
  readonly tokensPerBlock: number;
  /** gridH * gridW. */
  readonly numTokens: number;
}

export interface BlockGeometryOptions {
  /** Token grid height; default 8 (32 x 32 images, downsample 4). */
  gridH?: number;
  /** Token grid width; default 8. */
  gridW?: number;
  /** Block height in tokens; default 2. */
  blockH?: number;
  /** Block width in tokens; default 2. */
  blockW?: number;
}

/** Default token grid and block size (METHOD.md section 2): 8 x 8 tokens, 2 x 2 blocks. */
export const DEFAULT_BLOCK_GEOMETRY = { gridH: 8, gridW: 8, blockH: 2, blockW: 2 } as const;

/** The positive divisors of n, ascending. */
export function divisors(n: number): number[] {
  const out: number[] = [];
  for (let d = 1; d <= n; d++) if (n % d === 0) out.push(d);
  return out;
}

const isPosInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v > 0;

/**
 * Validate a grid and block size and derive the block counts. Missing fields
 * take the defaults (8 x 8 grid, 2 x 2 blocks). Errors name `order.gridSize`
 * or `order.blockSize`; a block size that does not tile the grid is refused
 * with the divisors that would.
 */
export function blockGeometry(opts: BlockGeometryOptions = {}): BlockGeometry {
  const gridH = opts.gridH ?? DEFAULT_BLOCK_GEOMETRY.gridH;
  const gridW = opts.gridW ?? DEFAULT_BLOCK_GEOMETRY.gridW;
  const blockH = opts.blockH ?? DEFAULT_BLOCK_GEOMETRY.blockH;
  const blockW = opts.blockW ?? DEFAULT_BLOCK_GEOMETRY.blockW;
  ensure(
    isPosInt(gridH) && isPosInt(gridW),
    `the token grid must be positive integers, got gridH=${gridH}, gridW=${gridW}`,
    'order.gridSize',
    'use the backbone config\'s gridH and gridW (8 x 8 for 32 x 32 images)',
  );
  ensure(
    isPosInt(blockH) && isPosInt(blockW),
    `the block size must be positive integers, got blockH=${blockH}, blockW=${blockW}`,
    'order.blockSize',
    `choose blockH from ${divisors(gridH).join(', ')} and blockW from ${divisors(gridW).join(', ')} (the default is 2 x 2)`,
  );
  if (gridH % blockH !== 0 || gridW % blockW !== 0) {
    const why: string[] = [];
    if (gridH % blockH !== 0) why.push(`gridH ${gridH} is not a multiple of blockH ${blockH}`);
    if (gridW % blockW !== 0) why.push(`gridW ${gridW} is not a multiple of blockW ${blockW}`);
    throw new OrderHeadError(
      `block size ${blockH}x${blockW} does not tile the ${gridH}x${gridW} token grid (${why.join('; ')})`,
      'order.blockSize',
      `choose blockH from the divisors of ${gridH} (${divisors(gridH).join(', ')}) ` +
        `and blockW from the divisors of ${gridW} (${divisors(gridW).join(', ')}); ` +
        `blockH=1, blockW=${gridW} gives token raster order`,
    );
  }
  const blocksY = gridH / blockH;
  const blocksX = gridW / blockW;
  return Object.freeze({
    gridH, gridW, blockH, blockW, blocksY, blocksX,
    numBlocks: blocksY * blocksX,
    tokensPerBlock: blockH * blockW,
    numTokens: gridH * gridW,
  });
}

/**
 * The geometry whose raster block order is token raster order: one block per
 * token row (blockH = 1, blockW = gridW). The LlamaGen raster baseline is
 * `rasterBlockOrder(tokenRasterGeometry(...))`.
 */
export function tokenRasterGeometry(opts: { gridH?: number; gridW?: number } = {}): BlockGeometry {
  const gridW = opts.gridW ?? DEFAULT_BLOCK_GEOMETRY.gridW;
  return blockGeometry({ gridH: opts.gridH, gridW, blockH: 1, blockW: gridW });
}

/** Throw unless `block` is an integer in [0, numBlocks). */
export function checkBlock(geo: BlockGeometry, block: number, where: string): void {
  ensure(
    Number.isInteger(block) && block >= 0 && block < geo.numBlocks,
    `block ${block} is out of range: a ${geo.blocksY}x${geo.blocksX} block grid has blocks 0..${geo.numBlocks - 1}`,
    where,
    `pass a block index in 0..${geo.numBlocks - 1} (raster order over the block grid)`,
  );
}

/** Throw unless `cell` is an integer in [0, numTokens). */
export function checkCell(geo: BlockGeometry, cell: number, where: string): void {
  ensure(
    Number.isInteger(cell) && cell >= 0 && cell < geo.numTokens,
    `cell ${cell} is out of range: a ${geo.gridH}x${geo.gridW} token grid has cells 0..${geo.numTokens - 1}`,
    where,
    `pass a cell index in 0..${geo.numTokens - 1} (row * gridW + col)`,
  );
}

/** Row and column of a block in the block grid. */
export function blockRowCol(geo: BlockGeometry, block: number): { row: number; col: number } {
  checkBlock(geo, block, 'blockRowCol(block)');
  return { row: Math.floor(block / geo.blocksX), col: block % geo.blocksX };
}

/** The cells of a block, in raster order inside the block (the decode order of its tokens). */
export function blockCells(geo: BlockGeometry, block: number): number[] {
  checkBlock(geo, block, 'blockCells(block)');
  const r0 = Math.floor(block / geo.blocksX) * geo.blockH;
  const c0 = (block % geo.blocksX) * geo.blockW;
  const out: number[] = [];
  for (let r = 0; r < geo.blockH; r++) {
    for (let c = 0; c < geo.blockW; c++) out.push((r0 + r) * geo.gridW + c0 + c);
  }
  return out;
}

/** The block that contains a cell. */
export function cellBlock(geo: BlockGeometry, cell: number): number {
  checkCell(geo, cell, 'cellBlock(cell)');
  const row = Math.floor(cell / geo.gridW);
  const col = cell % geo.gridW;
  return Math.floor(row / geo.blockH) * geo.blocksX + Math.floor(col / geo.blockW);
}

/**
 * Chebyshev distance between two blocks' coordinates on the block grid:
 * 0 for the same block, 1 for the 8 neighbours (fewer at edges), and so on.
 */
export function blockDistance(geo: BlockGeometry, a: number, b: number): number {
  checkBlock(geo, a, 'blockDistance(a)');
  checkBlock(geo, b, 'blockDistance(b)');
  const ar = Math.floor(a / geo.blocksX), ac = a % geo.blocksX;
  const br = Math.floor(b / geo.blocksX), bc = b % geo.blocksX;
  return Math.max(Math.abs(ar - br), Math.abs(ac - bc));
}

/** The blocks at distance 1 (up to 8), ascending (raster order). */
export function neighbours(geo: BlockGeometry, block: number): number[] {
  const { row, col } = blockRowCol(geo, block);
  const out: number[] = [];
  for (let r = Math.max(0, row - 1); r <= Math.min(geo.blocksY - 1, row + 1); r++) {
    for (let c = Math.max(0, col - 1); c <= Math.min(geo.blocksX - 1, col + 1); c++) {
      if (r !== row || c !== col) out.push(r * geo.blocksX + c);
    }
  }
  return out;
}
