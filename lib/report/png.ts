/**
 * A small PNG encoder, so notebooks can show image grids without a browser,
 * canvas or native image library (none install offline here).
 *
 * Writes 8-bit grayscale or RGB, non-interlaced, every scanline with filter
 * type 0 (None), compressed by Node's zlib. Chunk CRCs use the CRC-32 below.
 */
import * as zlib from 'node:zlib';
import { ensure } from '../runtime/errors';

/** The 8 bytes every PNG starts with. */
export const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/** CRC-32 (ISO 3309, polynomial 0xEDB88320) lookup table, built once. */
const CRC_TABLE: Uint32Array = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** CRC-32 as PNG chunks use it (same as zlib's crc32). */
export function crc32(bytes: Uint8Array, crc = 0): number {
  let c = (crc ^ 0xffffffff) >>> 0;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** One chunk: length, type, data, CRC over type + data. */
function chunk(type: string, data: Uint8Array): Buffer {
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  out.write(type, 4, 'ascii');
  out.set(data, 8);
  out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
  return out;
}

/**
 * Encode row-major pixels (`width * height * channels` bytes; RGB interleaved)
 * as a PNG file.
 */
export function encodePng(pixels: Uint8Array, width: number, height: number, channels: 1 | 3): Buffer {
  const where = 'encodePng';
  ensure(Number.isInteger(width) && width > 0 && Number.isInteger(height) && height > 0, `image size ${width}x${height} is not positive whole numbers`, where, 'pass width and height >= 1');
  ensure(channels === 1 || channels === 3, `channels must be 1 (grayscale) or 3 (RGB), got ${channels}`, where, 'pass 1 or 3');
  const rowBytes = width * channels;
  ensure(
    pixels.length === rowBytes * height,
    `got ${pixels.length} pixel bytes for a ${width}x${height}x${channels} image, which needs ${rowBytes * height}`,
    where,
    'pass exactly width * height * channels bytes',
  );

  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = channels === 1 ? 0 : 2; // colour type: grayscale / truecolour
  ihdr[10] = 0; // compression: deflate
  ihdr[11] = 0; // filter method 0
  ihdr[12] = 0; // no interlace

  // Each scanline is a filter-type byte (0 = None) followed by the row.
  const raw = Buffer.alloc((rowBytes + 1) * height);
  for (let y = 0; y < height; y++) {
    raw.set(pixels.subarray(y * rowBytes, (y + 1) * rowBytes), y * (rowBytes + 1) + 1);
  }
  return Buffer.concat([
    PNG_SIGNATURE,
    chunk('IHDR', ihdr),
    chunk('IDAT', zlib.deflateSync(raw, { level: 9 })),
    chunk('IEND', new Uint8Array(0)),
  ]);
}
