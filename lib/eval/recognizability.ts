/**
 * Progressive recognizability (METHOD.md section 7): as blocks are decoded in
 * some order, how soon can a classifier tell the image's class from the
 * partial image? The curve is accuracy against the fraction of blocks
 * decoded; its area (curveAuc) summarises it in one number, higher = the
 * order makes the class visible earlier.
 *
 * Rendering a partial image: each token covers a patch of
 * (height / gridH) x (width / gridW) pixels; a block covers blockH x blockW
 * tokens (lib/order geometry). Pixels of visible blocks are copied exactly;
 * every other pixel is set to `fill`.
 *
 * The default fill is BACKGROUND_FILL = -1, the black background of
 * Fashion-MNIST and the value padTo uses for the 2-pixel border: the
 * classifier saw it around and behind every training image, so an undecoded
 * region reads as "nothing drawn here yet" and not as an unfamiliar texture;
 * an empty canvas is exactly a blank padded image. The alternative, the
 * dataset's mean image (`meanImage`, pass it as `fill`), hints at a generic
 * garment shape in the undecoded area and so credits every order with some
 * recognizability it did not earn; it is available for comparison. Which fill
 * produced a curve is recorded in the result.
 *
 * These curves use the feature network as classifier: show
 * FEATURE_NET_CAVEAT (metrics.ts) with them.
 */
import { OrderHeadError, ensure } from '../runtime/errors';
import { BlockGeometry, blockCells, validateBlockOrder } from '../order';

/** The fill of undecoded regions: the datasets' background / padding value, black in [-1, 1]. */
export const BACKGROUND_FILL = -1;

/** Image size and block geometry: how tokens and blocks map to pixels. */
export interface PartialImageLayout {
  geo: BlockGeometry;
  /** Image height in pixels (a multiple of geo.gridH). */
  height: number;
  /** Image width in pixels (a multiple of geo.gridW). */
  width: number;
}

/** Pixels per token in each direction (e.g. 4 x 4 for 32 x 32 images on an 8 x 8 grid). */
export function tokenPatchSize(layout: PartialImageLayout): { patchH: number; patchW: number } {
  const { geo, height, width } = layout;
  ensure(
    Number.isInteger(height) && Number.isInteger(width) && height > 0 && width > 0 && height % geo.gridH === 0 && width % geo.gridW === 0,
    `a ${height}x${width} image does not divide into the ${geo.gridH}x${geo.gridW} token grid`,
    'renderPartialImages(layout)',
    `pass the padded image size (e.g. 32x32 for an 8x8 grid: 4x4 pixels per token)`,
  );
  return { patchH: height / geo.gridH, patchW: width / geo.gridW };
}

/** Flat pixel indices (y * width + x) of each block, block-major. */
export function blockPixelIndices(layout: PartialImageLayout): Int32Array[] {
  const { geo, width } = layout;
  const { patchH, patchW } = tokenPatchSize(layout);
  const out: Int32Array[] = [];
  for (let b = 0; b < geo.numBlocks; b++) {
    const idx = new Int32Array(geo.tokensPerBlock * patchH * patchW);
    let k = 0;
    for (const cell of blockCells(geo, b)) {
      const y0 = Math.floor(cell / geo.gridW) * patchH, x0 = (cell % geo.gridW) * patchW;
      for (let y = 0; y < patchH; y++) for (let x = 0; x < patchW; x++) idx[k++] = (y0 + y) * width + x0 + x;
    }
    out.push(idx);
  }
  return out;
}

/** Visible masks as one flat [n * numBlocks] 0/1 array, from either accepted form. */
function flatMasks(visible: ReadonlyArray<ArrayLike<number>> | Uint8Array, n: number, numBlocks: number): Uint8Array {
  if (visible instanceof Uint8Array) {
    ensure(
      visible.length === n * numBlocks,
      `the flat mask array has ${visible.length} entries, expected ${n} images x ${numBlocks} blocks = ${n * numBlocks}`,
      'renderPartialImages(visible)',
      'pass one row of numBlocks 0/1 values per image (or an array of per-image masks)',
    );
    return visible;
  }
  ensure(
    Array.isArray(visible) && visible.length === n,
    `got ${Array.isArray(visible) ? visible.length : typeof visible} masks for ${n} images`,
    'renderPartialImages(visible)',
    'pass one mask (numBlocks 0/1 values, e.g. OrderState.visible) per image',
  );
  const out = new Uint8Array(n * numBlocks);
  visible.forEach((m, i) => {
    ensure(m.length === numBlocks, `mask ${i} has ${m.length} entries, expected ${numBlocks} blocks`, 'renderPartialImages(visible)', 'pass a mask with one entry per block (raster block order)');
    for (let b = 0; b < numBlocks; b++) out[i * numBlocks + b] = m[b] ? 1 : 0;
  });
  return out;
}

/**
 * Partial images: `images` [N * height * width] with only the visible blocks
 * kept (copied exactly) and every other pixel set to `fill` — a constant, or
 * a per-pixel image of height * width values (e.g. `meanImage`). `visible`
 * gives one mask per image (numBlocks entries, 1 = decoded), as an array of
 * masks (OrderState.visible) or one flat [N * numBlocks] Uint8Array.
 */
export function renderPartialImages(
  images: Float32Array, layout: PartialImageLayout, visible: ReadonlyArray<ArrayLike<number>> | Uint8Array, fill: number | Float32Array = BACKGROUND_FILL,
): Float32Array {
  const { geo, height, width } = layout;
  const px = height * width;
  const blocks = blockPixelIndices(layout);
  ensure(images.length % px === 0, `holds ${images.length} values, not a whole number of ${height}x${width} images`, 'renderPartialImages(images)', `pass N*${height}*${width} pixels`);
  const n = images.length / px;
  const masks = flatMasks(visible, n, geo.numBlocks);
  let fillImage: Float32Array | undefined;
  if (typeof fill === 'number') {
    ensure(Number.isFinite(fill), `fill ${fill} is not a finite number`, 'renderPartialImages(fill)', `use BACKGROUND_FILL (${BACKGROUND_FILL}) or a pixel value in [-1, 1]`);
  } else {
    ensure(fill instanceof Float32Array && fill.length === px, `a fill image must have ${px} values (one ${height}x${width} image), got ${fill?.length}`, 'renderPartialImages(fill)', 'pass meanImage(images, height * width) or a number');
    fillImage = fill;
  }
  const out = new Float32Array(images.length);
  for (let i = 0; i < n; i++) {
    const base = i * px;
    if (fillImage) out.set(fillImage, base);
    else out.fill(fill as number, base, base + px);
    for (let b = 0; b < geo.numBlocks; b++) {
      if (!masks[i * geo.numBlocks + b]) continue;
      const idx = blocks[b];
      for (let k = 0; k < idx.length; k++) out[base + idx[k]] = images[base + idx[k]];
    }
  }
  return out;
}

/** The per-pixel mean of images [N * pixels]: a `fill` image for renderPartialImages. */
export function meanImage(images: Float32Array, pixels: number): Float32Array {
  ensure(Number.isInteger(pixels) && pixels > 0 && images.length % pixels === 0 && images.length > 0, `holds ${images.length} values, not a whole number of ${pixels}-pixel images`, 'meanImage(images)', 'pass N*H*W pixels and H*W');
  const n = images.length / pixels;
  const sum = new Float64Array(pixels);
  for (let i = 0; i < n; i++) for (let p = 0; p < pixels; p++) sum[p] += images[i * pixels + p];
  return Float32Array.from(sum, (s) => s / n);
}

/** Blocks decoded at a fraction: round(fraction * numBlocks). */
export function blocksAtFraction(numBlocks: number, fraction: number): number {
  return Math.round(fraction * numBlocks);
}

/** Fractions k / numBlocks for k = 0..numBlocks: every step of a decode. */
export function allBlockFractions(numBlocks: number): number[] {
  return Array.from({ length: numBlocks + 1 }, (_, k) => k / numBlocks);
}

export interface RecognizabilityOptions {
  /** The classifier: images [N * H * W] -> probabilities [N * classes] (e.g. featureNetClassifier(net)). */
  classify: (images: Float32Array) => Float32Array;
  /** Complete images [N * H * W] in [-1, 1] (ground truth, or the generated samples). */
  images: Float32Array;
  /** The class of each image [N]. */
  labels: Int32Array;
  layout: PartialImageLayout;
  /** The block order of each image (N permutations), or one order shared by all (raster, a fixed random order). */
  orders: ReadonlyArray<ArrayLike<number>> | ArrayLike<number>;
  /** Fractions of blocks decoded, ascending in [0, 1]; default every step (allBlockFractions). */
  fractions?: readonly number[];
  /** Fill of undecoded pixels (see the module comment); default BACKGROUND_FILL. */
  fill?: number | Float32Array;
}

/** A recognizability curve and its area. */
export interface RecognizabilityCurve {
  fractions: number[];
  /** Blocks decoded at each fraction: round(fraction * numBlocks). */
  blocks: number[];
  /** Top-1 accuracy of the classifier on the partial images at each fraction. */
  accuracy: number[];
  /** Mean probability the classifier gives the true class (a smoother view of the same curve). */
  trueClassProb: number[];
  /** curveAuc(fractions, accuracy) when the fractions span [0, 1], else NaN. */
  auc: number;
  n: number;
  /** How undecoded pixels were filled: 'constant -1' or 'per-pixel image'. */
  fill: string;
}

function isOrderList(orders: RecognizabilityOptions['orders']): orders is ReadonlyArray<ArrayLike<number>> {
  return Array.isArray(orders) && orders.length > 0 && typeof orders[0] === 'object';
}

/**
 * Accuracy of `classify` on the partial images after the first
 * round(f * numBlocks) blocks of each image's order, for each fraction f.
 * One `classify` call per fraction, on all N images.
 */
export function recognizabilityCurve(opts: RecognizabilityOptions): RecognizabilityCurve {
  const { classify, images, labels, layout, fill = BACKGROUND_FILL } = opts;
  const { geo, height, width } = layout;
  const px = height * width;
  ensure(images.length % px === 0 && images.length > 0, `holds ${images.length} values, not a whole number of ${height}x${width} images`, 'recognizabilityCurve(images)', `pass N*${height}*${width} pixels`);
  const n = images.length / px;
  ensure(labels.length === n, `has ${labels.length} labels for ${n} images`, 'recognizabilityCurve(labels)', 'pass one label per image');
  const orders: number[][] = isOrderList(opts.orders)
    ? (() => {
        ensure(opts.orders.length === n, `has ${opts.orders.length} orders for ${n} images`, 'recognizabilityCurve(orders)', 'pass one block order per image, or a single order for all');
        return (opts.orders as ReadonlyArray<ArrayLike<number>>).map((o, i) => validateBlockOrder(geo, o, `recognizabilityCurve(orders[${i}])`));
      })()
    : new Array<number[]>(n).fill(validateBlockOrder(geo, opts.orders as ArrayLike<number>, 'recognizabilityCurve(orders)'));
  const fractions = [...(opts.fractions ?? allBlockFractions(geo.numBlocks))];
  ensure(fractions.length > 0, 'no fractions given', 'recognizabilityCurve(fractions)', 'pass e.g. allBlockFractions(geo.numBlocks)');
  fractions.forEach((f, i) => {
    ensure(Number.isFinite(f) && f >= 0 && f <= 1, `fraction ${f} is outside [0, 1]`, 'recognizabilityCurve(fractions)', 'pass shares of blocks decoded, from 0 to 1');
    ensure(i === 0 || f > fractions[i - 1], `fractions must increase, but ${f} follows ${fractions[i - 1]}`, 'recognizabilityCurve(fractions)', 'sort them ascending without repeats');
  });

  const blocks: number[] = [], accuracy: number[] = [], trueClassProb: number[] = [];
  const masks = new Uint8Array(n * geo.numBlocks);
  let classes = 0;
  for (const f of fractions) {
    const k = blocksAtFraction(geo.numBlocks, f);
    masks.fill(0);
    for (let i = 0; i < n; i++) for (let j = 0; j < k; j++) masks[i * geo.numBlocks + orders[i][j]] = 1;
    const probs = classify(renderPartialImages(images, layout, masks, fill));
    ensure(probs.length % n === 0 && probs.length >= n, `returned ${probs.length} values for ${n} images`, 'recognizabilityCurve(classify)', 'return N * classes probabilities, row by row');
    classes = probs.length / n;
    let correct = 0, pTrue = 0;
    for (let i = 0; i < n; i++) {
      const row = i * classes;
      if (labels[i] < 0 || labels[i] >= classes) {
        throw new OrderHeadError(`label ${labels[i]} of image ${i} is outside the classifier's ${classes} classes`, 'recognizabilityCurve(labels)', 'pass the labels of the classifier\'s dataset');
      }
      let best = 0;
      for (let c = 1; c < classes; c++) if (probs[row + c] > probs[row + best]) best = c;
      if (best === labels[i]) correct++;
      pTrue += probs[row + labels[i]];
    }
    blocks.push(k);
    accuracy.push(correct / n);
    trueClassProb.push(pTrue / n);
  }
  const spans = fractions[0] === 0 && fractions[fractions.length - 1] === 1;
  return {
    fractions, blocks, accuracy, trueClassProb, n,
    auc: spans ? curveAuc(fractions, accuracy) : NaN,
    fill: typeof fill === 'number' ? `constant ${fill}` : 'per-pixel image',
  };
}

/**
 * Area under a curve over [0, 1] by the trapezoid rule. `fractions` must
 * increase from exactly 0 to exactly 1 (the empty and the complete image), so
 * areas of different curves cover the same range and a constant curve c has
 * area c.
 */
export function curveAuc(fractions: readonly number[], values: readonly number[]): number {
  ensure(fractions.length === values.length, `${fractions.length} fractions but ${values.length} values`, 'curveAuc(values)', 'pass one value per fraction');
  ensure(fractions.length >= 2, `needs at least 2 points, got ${fractions.length}`, 'curveAuc(fractions)', 'pass the curve from fraction 0 to 1');
  ensure(
    fractions[0] === 0 && fractions[fractions.length - 1] === 1,
    `the fractions run from ${fractions[0]} to ${fractions[fractions.length - 1]}, not from 0 to 1`,
    'curveAuc(fractions)',
    'include the empty (0) and the complete (1) image, so every area covers [0, 1]',
  );
  let area = 0;
  for (let i = 1; i < fractions.length; i++) {
    const dx = fractions[i] - fractions[i - 1];
    ensure(dx > 0, `fractions must increase, but ${fractions[i]} follows ${fractions[i - 1]}`, 'curveAuc(fractions)', 'sort them ascending without repeats');
    ensure(Number.isFinite(values[i]) && Number.isFinite(values[i - 1]), `value ${values[i]} is not finite`, 'curveAuc(values)', 'pass finite accuracies');
    area += (dx * (values[i] + values[i - 1])) / 2;
  }
  return area;
}
