// Our own code: no maintained npm package writes safetensors (npm `safetensors` is a 0.0.1 stub; @huggingface/hub only parses headers of files on the Hub), and this reader must check files before they reach tfjs.
/**
 * The safetensors file format, so checkpoints written here open in PyTorch
 * (`safetensors.torch.load_file`) and anything else that reads the format, and
 * so files from elsewhere are validated before they reach tfjs.
 *
 * Layout (https://github.com/huggingface/safetensors):
 *   8 bytes   u64 little-endian N = header length in bytes
 *   N bytes   UTF-8 JSON: { "<name>": { "dtype": "F32", "shape": [..], "data_offsets": [begin, end] },
 *                           "__metadata__": { "<key>": "<string value>" } }
 *             padded with spaces so that 8 + N is a multiple of 8
 *   rest      tensor bytes, little-endian, row-major; offsets are relative to
 *             the first byte after the header
 */
import * as fs from 'node:fs';
import { OrderHeadError, ensure } from './errors';

/** The dtypes this project stores. Others are refused with a conversion hint. */
export const SAFETENSORS_DTYPES = ['F32', 'I32', 'U8', 'BOOL'] as const;
export type SafeDtype = (typeof SAFETENSORS_DTYPES)[number];

export type SafeData = Float32Array | Int32Array | Uint8Array;

/** One tensor as stored: flat row-major data plus its shape. */
export interface SafeTensor {
  dtype: SafeDtype;
  shape: number[];
  data: SafeData;
}

export interface DecodedSafetensors {
  tensors: Record<string, SafeTensor>;
  metadata: Record<string, string>;
}

const ITEM_SIZE: Record<SafeDtype, number> = { F32: 4, I32: 4, U8: 1, BOOL: 1 };

/** The reference implementation refuses headers over 100 MB; so do we. */
const MAX_HEADER_BYTES = 100_000_000;

const METADATA_KEY = '__metadata__';

const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

function product(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

function arrayMatches(dtype: SafeDtype, data: SafeData): boolean {
  switch (dtype) {
    case 'F32':
      return data instanceof Float32Array;
    case 'I32':
      return data instanceof Int32Array;
    case 'U8':
    case 'BOOL':
      return data instanceof Uint8Array;
  }
}

/** Raw bytes of a typed array in little-endian order, whatever the host. */
function littleEndianBytes(data: SafeData): Uint8Array {
  const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (LITTLE_ENDIAN_HOST || data.BYTES_PER_ELEMENT === 1) return bytes;
  const swapped = new Uint8Array(bytes.length);
  const w = data.BYTES_PER_ELEMENT;
  for (let i = 0; i < bytes.length; i += w) for (let k = 0; k < w; k++) swapped[i + k] = bytes[i + w - 1 - k];
  return swapped;
}

/**
 * Encode named tensors and string metadata as a safetensors file image.
 * Tensors are laid out by item size (largest first), then name, as the
 * reference writer does, so every tensor starts on its own alignment.
 */
export function encodeSafetensors(named: Record<string, SafeTensor>, metadata: Record<string, string> = {}): Buffer {
  const where = (name: string) => `safetensors tensor '${name}'`;
  for (const [k, v] of Object.entries(metadata)) {
    ensure(
      typeof v === 'string',
      `metadata value for '${k}' is a ${typeof v}, but the format allows only strings`,
      `safetensors __metadata__.${k}`,
      'JSON.stringify non-string values before saving (PyTorch readers reject anything else)',
    );
  }
  const names = Object.keys(named);
  for (const name of names) {
    const t = named[name];
    ensure(name.length > 0 && name !== METADATA_KEY, `the tensor name '${name}' is reserved or empty`, where(name), 'rename the tensor');
    ensure(
      (SAFETENSORS_DTYPES as readonly string[]).includes(t.dtype),
      `unsupported dtype '${t.dtype}'`,
      where(name),
      `use one of ${SAFETENSORS_DTYPES.join(', ')}`,
    );
    ensure(
      Array.isArray(t.shape) && t.shape.every((d) => Number.isInteger(d) && d >= 0),
      `shape ${JSON.stringify(t.shape)} is not a list of non-negative integers`,
      where(name),
      'pass the tensor shape, e.g. [64, 128] ([] for a scalar)',
    );
    ensure(
      arrayMatches(t.dtype, t.data),
      `dtype ${t.dtype} does not match its ${t.data?.constructor?.name ?? typeof t.data} data`,
      where(name),
      'use Float32Array for F32, Int32Array for I32, Uint8Array for U8/BOOL',
    );
    ensure(
      t.data.length === product(t.shape),
      `has ${t.data.length} values but shape ${JSON.stringify(t.shape)} needs ${product(t.shape)}`,
      where(name),
      'pass the flat row-major data that matches the shape',
    );
  }
  names.sort((a, b) => ITEM_SIZE[named[b].dtype] - ITEM_SIZE[named[a].dtype] || (a < b ? -1 : a > b ? 1 : 0));

  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) header[METADATA_KEY] = metadata;
  let offset = 0;
  for (const name of names) {
    const t = named[name];
    const size = t.data.length * ITEM_SIZE[t.dtype];
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + size] };
    offset += size;
  }
  let json = Buffer.from(JSON.stringify(header), 'utf8');
  const pad = (8 - (json.length % 8)) % 8;
  if (pad > 0) json = Buffer.concat([json, Buffer.alloc(pad, 0x20)]);

  const out = Buffer.alloc(8 + json.length + offset);
  out.writeBigUInt64LE(BigInt(json.length), 0);
  json.copy(out, 8);
  let pos = 8 + json.length;
  for (const name of names) {
    const bytes = littleEndianBytes(named[name].data);
    out.set(bytes, pos);
    pos += bytes.length;
  }
  return out;
}

/** Copy little-endian tensor bytes into a fresh, aligned typed array of `dtype` (the source may sit at any offset). */
function toTyped(dtype: SafeDtype, src: Uint8Array): SafeData {
  const copy = new Uint8Array(src.length);
  copy.set(src);
  if (!LITTLE_ENDIAN_HOST && ITEM_SIZE[dtype] > 1) {
    for (let i = 0; i < copy.length; i += 4) {
      const a = copy[i];
      const b = copy[i + 1];
      copy[i] = copy[i + 3];
      copy[i + 1] = copy[i + 2];
      copy[i + 2] = b;
      copy[i + 3] = a;
    }
  }
  switch (dtype) {
    case 'F32':
      return new Float32Array(copy.buffer);
    case 'I32':
      return new Int32Array(copy.buffer);
    case 'U8':
    case 'BOOL':
      return copy;
  }
}

/**
 * Parse and validate a safetensors file image. `file` names the source in
 * errors. Every structural problem (truncation, bad header, offsets out of
 * range or overlapping, sizes that disagree with shapes) is an OrderHeadError
 * naming the file, because a bad checkpoint otherwise surfaces much later as
 * garbage weights or a tfjs shape error.
 */
export function decodeSafetensors(buf: Uint8Array, file = '<buffer>'): DecodedSafetensors {
  const corrupt = (problem: string) =>
    new OrderHeadError(problem, file, 'the file is truncated or corrupt: use an earlier checkpoint, or re-save it from the run that wrote it');
  if (buf.length < 8) throw corrupt(`the file has ${buf.length} bytes, fewer than the 8-byte header length (truncated file)`);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const headerLen64 = view.getBigUint64(0, true);
  if (headerLen64 > BigInt(MAX_HEADER_BYTES)) {
    throw corrupt(`the header length field says ${headerLen64} bytes, more than the ${MAX_HEADER_BYTES}-byte limit (not a safetensors file?)`);
  }
  const headerLen = Number(headerLen64);
  if (8 + headerLen > buf.length) {
    throw corrupt(`the header length field says ${headerLen} bytes but only ${buf.length - 8} follow it (header runs past end of file: truncated or not a safetensors file)`);
  }
  const headerText = Buffer.from(buf.buffer, buf.byteOffset + 8, headerLen).toString('utf8');
  let header: unknown;
  try {
    header = JSON.parse(headerText);
  } catch (err) {
    throw corrupt(`the header is not valid JSON (${err instanceof Error ? err.message : String(err)})`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) {
    throw corrupt('the header is not a JSON object');
  }
  const dataStart = 8 + headerLen;
  const dataLen = buf.length - dataStart;

  const entries = header as Record<string, unknown>;
  const metadata: Record<string, string> = {};
  const rawMeta = entries[METADATA_KEY];
  if (rawMeta !== undefined) {
    if (typeof rawMeta !== 'object' || rawMeta === null || Array.isArray(rawMeta)) throw corrupt('__metadata__ is not an object');
    for (const [k, v] of Object.entries(rawMeta)) {
      if (typeof v !== 'string') throw corrupt(`__metadata__.${k} is a ${typeof v}, the format allows only strings`);
      metadata[k] = v;
    }
  }

  const spans: Array<{ name: string; begin: number; end: number }> = [];
  const tensors: Record<string, SafeTensor> = {};
  for (const [name, info] of Object.entries(entries)) {
    if (name === METADATA_KEY) continue;
    if (typeof info !== 'object' || info === null) throw corrupt(`tensor '${name}' has no {dtype, shape, data_offsets} entry`);
    const { dtype, shape, data_offsets: offsets } = info as Record<string, unknown>;
    if (typeof dtype !== 'string' || !(SAFETENSORS_DTYPES as readonly string[]).includes(dtype)) {
      throw new OrderHeadError(
        `tensor '${name}' has dtype ${JSON.stringify(dtype)}, which this project does not load`,
        file,
        `store it as one of ${SAFETENSORS_DTYPES.join(', ')} (in PyTorch: tensor.float() or tensor.int() before save_file)`,
      );
    }
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw corrupt(`tensor '${name}' has shape ${JSON.stringify(shape)}, not a list of non-negative integers`);
    }
    if (
      !Array.isArray(offsets) ||
      offsets.length !== 2 ||
      !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) ||
      offsets[0] > offsets[1]
    ) {
      throw corrupt(`tensor '${name}' has data_offsets ${JSON.stringify(offsets)}, not [begin, end] with 0 <= begin <= end`);
    }
    const [begin, end] = offsets as [number, number];
    const dt = dtype as SafeDtype;
    const expected = product(shape as number[]) * ITEM_SIZE[dt];
    if (end - begin !== expected) {
      throw corrupt(`tensor '${name}' spans ${end - begin} bytes but ${dt} shape ${JSON.stringify(shape)} needs ${expected}`);
    }
    if (end > dataLen) {
      throw corrupt(`tensor '${name}' ends at byte ${end} of the data section, which has only ${dataLen} bytes (truncated file)`);
    }
    spans.push({ name, begin, end });
    tensors[name] = { dtype: dt, shape: [...(shape as number[])], data: toTyped(dt, buf.subarray(dataStart + begin, dataStart + end)) };
  }
  spans.sort((a, b) => a.begin - b.begin || a.end - b.end);
  // Compare each span with the furthest-reaching one before it, not just its
  // neighbour, so a short tensor between two others cannot hide an overlap.
  let reach: { name: string; begin: number; end: number } | undefined;
  for (const cur of spans) {
    // Empty tensors occupy no bytes and cannot overlap anything.
    if (cur.end === cur.begin) continue;
    if (reach && cur.begin < reach.end) {
      throw corrupt(`tensors '${reach.name}' [${reach.begin}, ${reach.end}) and '${cur.name}' [${cur.begin}, ${cur.end}) overlap`);
    }
    if (!reach || cur.end > reach.end) reach = cur;
  }
  return { tensors, metadata };
}

/** Read and decode a safetensors file; a missing file is an OrderHeadError. */
export function readSafetensors(file: string): DecodedSafetensors {
  let buf: Buffer;
  try {
    buf = fs.readFileSync(file);
  } catch (err) {
    const code = (err as { code?: string }).code;
    throw new OrderHeadError(
      code === 'ENOENT' ? 'the file does not exist' : `cannot read the file (${(err as Error).message})`,
      file,
      'check the path (list the folder to see which checkpoints exist)',
    );
  }
  return decodeSafetensors(buf, file);
}
