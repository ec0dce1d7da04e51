/**
 * Views of one state for the oracle and planner figures (dataset-figures.ts,
 * lib/planner/figures.ts): per-block values laid out on the block grid, and
 * an image with its hidden blocks blanked out.
 */
import { ensure } from '../runtime/errors';
import { BlockGeometry } from '../order';

/** A block-grid matrix of per-block values (NaN -> null) for a heatmap. */
export function blockGridValues(geo: BlockGeometry, values: ArrayLike<number>, offset = 0): (number | null)[][] {
  return Array.from({ length: geo.blocksY }, (_, r) => Array.from({ length: geo.blocksX }, (_, c) => {
    const v = values[offset + r * geo.blocksX + c];
    return Number.isFinite(v) ? v : null;
  }));
}

/**
 * A copy of one image ([height * width] pixels) with the hidden blocks set to
 * `fill` (default -1, background), for showing a visible state. The image is
 * cut into the geometry's block grid (pixels per token = height / gridH).
 */
export function hideBlocks(geo: BlockGeometry, image: Float32Array, height: number, width: number, visible: ArrayLike<number>, offset = 0, fill = -1): Float32Array {
  ensure(image.length === height * width && height % geo.gridH === 0 && width % geo.gridW === 0,
    `image of ${image.length} pixels is not ${height}x${width} with a multiple of the ${geo.gridH}x${geo.gridW} token grid`, 'hideBlocks(image)', 'pass one decoded image with its height and width');
  const ph = (height / geo.gridH) * geo.blockH, pw = (width / geo.gridW) * geo.blockW;
  const out = image.slice();
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const b = Math.floor(y / ph) * geo.blocksX + Math.floor(x / pw);
      if (!visible[offset + b]) out[y * width + x] = fill;
    }
  }
  return out;
}
