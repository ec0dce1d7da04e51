/**
 * Reader and writer for IDX files, the format MNIST and Fashion-MNIST ship in.
 *
 * An IDX file is a 4-byte magic (0x00 0x00 dtype ndims), then `ndims`
 * big-endian uint32 sizes, then the items in row-major order. The files are
 * usually gzipped; we detect gzip by its magic bytes (1f 8b) rather than the
 * file name, so a renamed or pre-unzipped file still loads.
 *
 * Only unsigned bytes (dtype 0x08) are supported: that is what image and label
 * files use, and it lets the reader hand back a zero-copy Uint8Array view.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { OrderHeadError, ensure } from '../runtime/errors';

/** An n-dimensional array of unsigned bytes, as stored in an IDX file. */
export interface IdxArray {
  /** Sizes, outermost first: (N, H, W) for images, (N) for labels. */
  dims: number[];
  /** The items in row-major order; `data.length` is the product of `dims`. */
  data: Uint8Array;
}

/** Where Debian's `dataset-fashion-mnist` package installs its files. */
export const DEBIAN_FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist';

const IDX_UBYTE = 0x08;

/** The IDX type codes, for naming an unsupported one in an error. */
const IDX_DTYPE_NAMES: Record<number, string> = {
  0x08: 'unsigned byte',
  0x09: 'signed byte',
  0x0b: 'int16',
  0x0c: 'int32',
  0x0d: 'float32',
  0x0e: 'float64',
};

/** True when the bytes start with the gzip magic 1f 8b. */
export function isGzip(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b;
}

/**
 * The fix to suggest for a missing file: the Debian package for the standard
 * Fashion-MNIST location, a generic hint otherwise.
 */
export function missingFileFix(file: string): string {
  const resolved = path.resolve(file);
  if (resolved === DEBIAN_FASHION_MNIST_DIR || resolved.startsWith(DEBIAN_FASHION_MNIST_DIR + path.sep)) {
    return 'install the Debian package dataset-fashion-mnist: run `bash scripts/setup.sh` or `apt-get install dataset-fashion-mnist`';
  }
  return 'check the path (relative paths are resolved from the current directory, ' + process.cwd() + ')';
}

/** Read an IDX file (plain or gzip) and validate its header against its size. */
export function readIdx(file: string): IdxArray {
  let raw: Buffer;
  try {
    raw = fs.readFileSync(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new OrderHeadError('file not found', file, missingFileFix(file));
    if (code === 'EISDIR') throw new OrderHeadError('is a directory, not an IDX file', file, 'pass the path of the .gz or plain IDX file inside it');
    throw new OrderHeadError(`cannot read the file (${code ?? String(err)})`, file, 'check the file permissions');
  }
  ensure(raw.length > 0, 'file is empty (0 bytes)', file, 'replace it with a complete copy of the IDX file');
  return parseIdx(maybeGunzip(raw, file), file);
}

/**
 * The dimensions of an IDX file without reading its items: only the first
 * kilobytes are read (and, for .gz, inflated), so the size of a split can be
 * checked before the dataset is loaded. The magic is checked as readIdx does.
 */
export function readIdxHeader(file: string): { dims: number[] } {
  let head: Buffer;
  try {
    const fd = fs.openSync(file, 'r');
    try {
      head = Buffer.alloc(4096);
      head = head.subarray(0, fs.readSync(fd, head, 0, head.length, 0));
    } finally {
      fs.closeSync(fd);
    }
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new OrderHeadError('file not found', file, missingFileFix(file));
    throw new OrderHeadError(`cannot read the file (${code ?? String(err)})`, file, 'check the path and the file permissions');
  }
  ensure(head.length > 0, 'file is empty (0 bytes)', file, 'replace it with a complete copy of the IDX file');
  let bytes: Uint8Array = head;
  if (isGzip(head)) {
    try {
      // A prefix of the stream: flush what inflates instead of failing on the missing end.
      bytes = zlib.gunzipSync(head, { finishFlush: zlib.constants.Z_SYNC_FLUSH });
    } catch (err) {
      throw new OrderHeadError(`corrupt gzip data (${(err as Error).message})`, file, 'the file is damaged; replace it with a complete copy');
    }
  }
  ensure(bytes.length >= 4 && bytes[0] === 0 && bytes[1] === 0 && bytes[2] in IDX_DTYPE_NAMES && bytes[3] > 0 && bytes.length >= 4 + 4 * bytes[3],
    `not an IDX file (magic bytes ${hex(bytes.subarray(0, 4))}; expected 00 00 08 <ndims>)`, file,
    'pass an IDX file such as train-images-idx3-ubyte.gz or train-labels-idx1-ubyte.gz');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return { dims: Array.from({ length: bytes[3] }, (_, i) => view.getUint32(4 + 4 * i, false)) };
}

/** Gunzip when the gzip magic is present; a broken stream becomes an OrderHeadError naming the file. */
function maybeGunzip(raw: Buffer, file: string): Uint8Array {
  if (!isGzip(raw)) return raw;
  try {
    return zlib.gunzipSync(raw);
  } catch (err) {
    throw new OrderHeadError(
      `corrupt gzip data (${(err as Error).message})`,
      file,
      'the file is damaged or was cut off while copying; replace it with a complete copy',
    );
  }
}

/**
 * Parse IDX bytes that are already decompressed. `where` names the source in
 * error messages (a file path, or a label for in-memory data).
 */
export function parseIdx(bytes: Uint8Array, where: string): IdxArray {
  ensure(bytes.length > 0, 'holds no data (0 bytes after decompression)', where, 'replace it with a complete copy of the IDX file');
  ensure(bytes.length >= 4, `is ${bytes.length} bytes long, shorter than the 4-byte IDX magic`, where, 'replace it with a complete copy of the IDX file');
  const magicHex = hex(bytes.subarray(0, 4));
  const dtype = bytes[2];
  const ndims = bytes[3];
  const wrongMagic = (problem: string) =>
    new OrderHeadError(
      `not an IDX file: ${problem} (magic bytes ${magicHex}; expected 00 00 08 <ndims>)`,
      where,
      'pass an IDX file such as train-images-idx3-ubyte.gz or train-labels-idx1-ubyte.gz',
    );
  if (bytes[0] !== 0 || bytes[1] !== 0) throw wrongMagic('the first two bytes are not zero');
  if (!(dtype in IDX_DTYPE_NAMES)) throw wrongMagic(`unknown type code 0x${dtype.toString(16).padStart(2, '0')}`);
  if (ndims === 0) throw wrongMagic('the header declares 0 dimensions');
  ensure(
    dtype === IDX_UBYTE,
    `holds ${IDX_DTYPE_NAMES[dtype]} items (type code 0x${dtype.toString(16).padStart(2, '0')}); only unsigned bytes (0x08) are supported`,
    where,
    'convert the file to unsigned bytes, as MNIST-style image and label files are',
  );

  const headerBytes = 4 + 4 * ndims;
  ensure(
    bytes.length >= headerBytes,
    `truncated header: ${ndims} dimensions need ${headerBytes} header bytes but the data is ${bytes.length} bytes`,
    where,
    'the file was cut off; replace it with a complete copy',
  );
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const dims: number[] = [];
  let count = 1;
  for (let i = 0; i < ndims; i++) {
    const size = view.getUint32(4 + 4 * i, false);
    dims.push(size);
    count *= size;
  }
  ensure(
    Number.isSafeInteger(count) && count <= 0x7fffffff,
    `header dimensions [${dims.join(', ')}] describe ${count} items, too many for one array`,
    where,
    'check that the file is an IDX file; split very large arrays into several files',
  );

  const payload = bytes.length - headerBytes;
  ensure(
    payload >= count,
    `truncated data: dimensions [${dims.join(', ')}] need ${count} bytes after the header but only ${payload} are there`,
    where,
    'the file was cut off; replace it with a complete copy',
  );
  ensure(
    payload === count,
    `${payload - count} unexpected bytes after the data: dimensions [${dims.join(', ')}] need ${count} bytes, found ${payload}`,
    where,
    'the header does not match the contents; replace the file with an intact copy',
  );
  return { dims, data: new Uint8Array(bytes.buffer, bytes.byteOffset + headerBytes, count) };
}

/** Serialise unsigned bytes as IDX (uncompressed). */
export function encodeIdx(dims: readonly number[], data: Uint8Array): Buffer {
  const where = 'encodeIdx(dims)';
  ensure(dims.length >= 1 && dims.length <= 255, `needs 1 to 255 dimensions, got ${dims.length}`, where, 'pass the array shape, e.g. [N, 28, 28]');
  let count = 1;
  for (const size of dims) {
    ensure(
      Number.isInteger(size) && size >= 0 && size <= 0xffffffff,
      `dimension ${size} is not an integer in 0 .. 2^32-1`,
      where,
      'pass whole, non-negative sizes',
    );
    count *= size;
  }
  ensure(
    count === data.length,
    `dimensions [${dims.join(', ')}] describe ${count} items but the data holds ${data.length}`,
    where,
    'pass the shape that matches the data',
  );
  const header = Buffer.alloc(4 + 4 * dims.length);
  header[2] = IDX_UBYTE;
  header[3] = dims.length;
  dims.forEach((size, i) => header.writeUInt32BE(size, 4 + 4 * i));
  return Buffer.concat([header, data]);
}

/**
 * Write unsigned bytes as an IDX file, gzipped when the name ends in `.gz`
 * (level 9; Node writes a zero timestamp, so the output is reproducible).
 * Creates the parent folder if needed.
 */
export function writeIdx(file: string, dims: readonly number[], data: Uint8Array): void {
  const plain = encodeIdx(dims, data);
  const bytes = file.endsWith('.gz') ? zlib.gzipSync(plain, { level: 9 }) : plain;
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, bytes);
}

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join(' ');
}
