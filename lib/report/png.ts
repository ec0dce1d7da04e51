/**
 * PNG encoding of grayscale or RGB pixels, so notebooks can show image grids
 * without a browser, canvas or native image library: pngjs (pure JS on
 * Node's zlib). Its adaptive per-row filters make image grids about 30%
 * smaller, and encoding 1.4-3.7x faster, than the filter-None, deflate-9
 * encoder it replaced (measured on notebook image grids, issue 24).
 */
import { PNG } from 'pngjs';
import { ensure } from '../runtime/errors';

/** PNG colour type per channel count (1 grayscale, 3 truecolour), as pngjs's input and output type. */
const COLOR_TYPE = { 1: 0, 3: 2 } as const;

/**
 * Encode row-major pixels (`width * height * channels` bytes; RGB interleaved)
 * as an 8-bit, non-interlaced PNG file.
 */
export function encodePng(pixels: Uint8Array, width: number, height: number, channels: 1 | 3): Buffer {
  const where = 'encodePng';
  ensure(Number.isInteger(width) && width > 0 && Number.isInteger(height) && height > 0, `image size ${width}x${height} is not positive whole numbers`, where, 'pass width and height >= 1');
  ensure(channels === 1 || channels === 3, `channels must be 1 (grayscale) or 3 (RGB), got ${channels}`, where, 'pass 1 or 3');
  ensure(
    pixels.length === width * channels * height,
    `got ${pixels.length} pixel bytes for a ${width}x${height}x${channels} image, which needs ${width * channels * height}`,
    where,
    'pass exactly width * height * channels bytes',
  );
  // pngjs takes the image as a PNG object; its data need not be RGBA when inputColorType says so.
  // Sized afterwards, as the constructor would allocate an RGBA buffer we never use.
  const image = Object.assign(new PNG(), { width, height, data: Buffer.from(pixels.buffer, pixels.byteOffset, pixels.length) });
  return PNG.sync.write(image, { colorType: COLOR_TYPE[channels], inputColorType: COLOR_TYPE[channels], inputHasAlpha: false, bitDepth: 8 });
}
