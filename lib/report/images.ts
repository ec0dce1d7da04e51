/**
 * Tile a batch of images into one PNG grid, for dataset previews and samples.
 *
 * Accepts a flat Float32Array or a tfjs tensor without importing tfjs here:
 * tensors are recognised by shape and read with `dataSync()`, so this module
 * stays usable from code that never loads a backend.
 */
import type { Tensor } from '@tensorflow/tfjs';
import { OrderHeadError, ensure } from '../runtime/errors';
import { encodePng } from './png';
import { showImage } from './notebook';

/** The value range the images are in; both map linearly to 0..255 (clamped). */
export type PixelRange = '[-1,1]' | '[0,1]';

export interface ImageGridOptions {
  /** Tiles per row; default ceil(sqrt(N)). */
  cols?: number;
  /** Nearest-neighbour upscale factor (whole number); default 2. */
  scale?: number;
  /** Gap between and around tiles, in output pixels; default 2. */
  pad?: number;
  /** Gap colour 0..255; default 128 (grey, distinct from black backgrounds). */
  padValue?: number;
  /** Value range of the input; default '[-1,1]'. */
  range?: PixelRange;
  /** Image height and width: required for a flat Float32Array, ignored for tensors. */
  height?: number;
  width?: number;
}

export interface ImageGrid {
  png: Buffer;
  width: number;
  height: number;
}

interface Batch {
  values: ArrayLike<number>;
  n: number;
  height: number;
  width: number;
  channels: 1 | 3;
}

/** Duck-typed tfjs tensor check (no runtime tfjs import). */
function isTensor(x: unknown): x is Tensor {
  return typeof x === 'object' && x !== null && Array.isArray((x as Tensor).shape) && typeof (x as Tensor).dataSync === 'function';
}

/** Shape the input as (N, H, W, C) with C = 1 or 3. */
function toBatch(images: Float32Array | Tensor, opts: ImageGridOptions): Batch {
  const where = 'imageGrid(images)';
  if (isTensor(images)) {
    const shape = images.shape;
    let [n, height, width, channels] = [1, 0, 0, 1];
    if (shape.length === 2) [height, width] = shape;
    else if (shape.length === 3) [n, height, width] = shape;
    else if (shape.length === 4) [n, height, width, channels] = shape;
    else throw new OrderHeadError(`tensor has shape [${shape.join(', ')}]`, where, 'pass (N, H, W), (N, H, W, 1) or (N, H, W, 3)');
    ensure(channels === 1 || channels === 3, `tensor has ${channels} channels`, where, 'pass 1 (grayscale) or 3 (RGB) channels');
    return { values: images.dataSync(), n, height, width, channels: channels as 1 | 3 };
  }
  ensure(images instanceof Float32Array, 'expected a Float32Array or a tfjs Tensor', where, 'pass dataset.images or a tensor');
  const { height, width } = opts;
  ensure(
    Number.isInteger(height) && Number.isInteger(width) && height! > 0 && width! > 0,
    'a flat Float32Array needs the image size',
    'imageGrid(opts.height, opts.width)',
    'pass { height: ds.height, width: ds.width }',
  );
  const plane = height! * width!;
  ensure(images.length % plane === 0, `length ${images.length} is not a multiple of ${height}x${width}`, where, 'pass whole images with the matching height and width');
  return { values: images, n: images.length / plane, height: height!, width: width!, channels: 1 };
}

/** Lay N images out in a grid and encode it as PNG. */
export function imageGrid(images: Float32Array | Tensor, opts: ImageGridOptions = {}): ImageGrid {
  const batch = toBatch(images, opts);
  const { n, height, width, channels, values } = batch;
  ensure(n > 0, 'no images to show', 'imageGrid(images)', 'pass at least one image');
  const cols = opts.cols ?? Math.ceil(Math.sqrt(n));
  const scale = opts.scale ?? 2;
  const pad = opts.pad ?? 2;
  const padValue = opts.padValue ?? 128;
  ensure(Number.isInteger(cols) && cols > 0, `cols must be a positive whole number, got ${cols}`, 'imageGrid(opts.cols)', 'pass e.g. 8');
  ensure(Number.isInteger(scale) && scale > 0 && scale <= 64, `scale must be a whole number in 1..64, got ${scale}`, 'imageGrid(opts.scale)', 'pass e.g. 2');
  ensure(Number.isInteger(pad) && pad >= 0, `pad must be a non-negative whole number, got ${pad}`, 'imageGrid(opts.pad)', 'pass e.g. 2');
  ensure(padValue >= 0 && padValue <= 255, `padValue must be in 0..255, got ${padValue}`, 'imageGrid(opts.padValue)', 'pass e.g. 128');
  const [lo, hi] = opts.range === '[0,1]' ? [0, 1] : opts.range === undefined || opts.range === '[-1,1]' ? [-1, 1] : [NaN, NaN];
  ensure(!Number.isNaN(lo), `unknown range '${opts.range}'`, 'imageGrid(opts.range)', "pass '[-1,1]' or '[0,1]'");

  const rows = Math.ceil(n / cols);
  const tileW = width * scale;
  const tileH = height * scale;
  const outW = cols * tileW + (cols + 1) * pad;
  const outH = rows * tileH + (rows + 1) * pad;
  const out = new Uint8Array(outW * outH * channels).fill(padValue);
  const toByte = 255 / (hi - lo);
  for (let i = 0; i < n; i++) {
    const x0 = pad + (i % cols) * (tileW + pad);
    const y0 = pad + Math.floor(i / cols) * (tileH + pad);
    const base = i * height * width * channels;
    for (let y = 0; y < tileH; y++) {
      const srcRow = base + Math.floor(y / scale) * width * channels;
      const dstRow = ((y0 + y) * outW + x0) * channels;
      for (let x = 0; x < tileW; x++) {
        const src = srcRow + Math.floor(x / scale) * channels;
        for (let c = 0; c < channels; c++) {
          const v = Math.round((values[src + c] - lo) * toByte);
          // NaN (a diverged model) shows as black rather than breaking the image.
          out[dstRow + x * channels + c] = v > 255 ? 255 : v >= 0 ? v : 0;
        }
      }
    }
  }
  return { png: encodePng(out, outW, outH, channels), width: outW, height: outH };
}

/**
 * Build an image grid and show it inline in the notebook. Returns nothing, so
 * tslab does not print the PNG bytes as the cell's value; call imageGrid for them.
 */
export function showImageGrid(images: Float32Array | Tensor, opts: ImageGridOptions = {}): void {
  showImage(imageGrid(images, opts).png);
}
