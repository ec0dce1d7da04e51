/**
 * Checkpoints: weights plus the config that produced them, in one safetensors
 * file, so a checkpoint can never be loaded into a model built from a
 * different config without the user being told exactly which field differs.
 *
 * Files are written atomically (see atomic.ts) and refused when any weight is
 * NaN/Inf: a diverged step must not replace the last good checkpoint.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { createHash } from 'node:crypto';
import { OrderHeadError, ensure } from './errors';
import { writeFileAtomic, WriteAtomicOptions } from './atomic';
import { encodeSafetensors, readSafetensors, SafeTensor } from './safetensors';

/** Value of `__metadata__.format` in every checkpoint this module writes. */
export const CHECKPOINT_FORMAT = 'orderhead-checkpoint/1';

const EXT = '.safetensors';

/** What a weight may be given as: a tensor, a flat typed array (1-D), or shaped raw data. */
export type WeightValue = tf.Tensor | Float32Array | Int32Array | Uint8Array | SafeTensor;

export interface SaveCheckpointOptions {
  weights: Record<string, WeightValue>;
  /** The resolved config that produced the weights; stored as JSON. */
  config: object;
  /** Training step (optimizer updates done). */
  step: number;
  /** Stage or model kind (`stage1`, `orderhead`); default: the name up to its first '-'. */
  kind?: string;
  /** Anything else to resume with (RNG state, optimizer step count, best loss); stored as JSON. */
  extra?: object;
  /** File-system hooks for tests (simulated disk full). */
  io?: WriteAtomicOptions['io'];
}

export interface LoadCheckpointOptions {
  /** The config the caller is about to use; the checkpoint's must match it. */
  expectConfig?: object;
  /** Compare only these dot paths (`model.dModel`); default: every field of both configs. */
  compareKeys?: string[];
}

export interface LoadedCheckpoint<C = Record<string, unknown>> {
  /** Fresh tensors; the caller owns them and must dispose them (`tf.dispose(Object.values(weights))`). */
  weights: Record<string, tf.Tensor>;
  config: C;
  step: number;
  kind: string;
  extra: Record<string, unknown>;
  /** The raw safetensors metadata (all strings). */
  metadata: Record<string, string>;
  path: string;
}

/** One field that differs between two configs. */
export interface ConfigDifference {
  /** Dot path of the field, `model.layers`. */
  path: string;
  /** Value in the stored file (undefined when the field is absent there). */
  stored: unknown;
  /** Value the caller expects (undefined when absent there). */
  expected: unknown;
}

const SAFE_NAME = /^[A-Za-z0-9._]+$/;

/**
 * The canonical checkpoint name, e.g. `checkpointName('stage1', 500, ['r1.00'])`
 * -> `stage1-step000500-r1.00`. Zero-padded steps sort by name in a folder
 * listing; `latestCheckpoint` parses the number and does not rely on that.
 */
export function checkpointName(prefix: string, step: number, tags: readonly string[] = []): string {
  ensure(SAFE_NAME.test(prefix), `prefix '${prefix}' may contain only letters, digits, '.' and '_'`, 'checkpointName(prefix)', "use a stage name such as 'stage1'");
  ensure(Number.isSafeInteger(step) && step >= 0, `step ${step} is not a non-negative integer`, 'checkpointName(step)', 'pass the number of optimizer steps done');
  for (const tag of tags) {
    ensure(SAFE_NAME.test(tag), `tag '${tag}' may contain only letters, digits, '.' and '_'`, 'checkpointName(tags)', "format tags like 'r1.00' or 'best'");
  }
  return [prefix, `step${String(step).padStart(6, '0')}`, ...tags].join('-');
}

/** Round-trip through JSON so undefined fields, NaN and class instances compare the way they are stored. */
function jsonNormal(value: unknown): unknown {
  const text = JSON.stringify(value);
  return text === undefined ? undefined : JSON.parse(text);
}

/** JSON text with object keys sorted, so key order never counts as a difference. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (isPlainObject(value)) {
    return `{${Object.keys(value)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson(value[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(value) ?? 'undefined';
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function getPath(obj: unknown, dotted: string): unknown {
  let cur: unknown = obj;
  for (const key of dotted.split('.')) {
    if (!isPlainObject(cur) && !Array.isArray(cur)) return undefined;
    cur = (cur as Record<string, unknown>)[key];
  }
  return cur;
}

/**
 * Field-by-field differences between a stored config and the expected one,
 * after both are normalised through JSON. Objects are compared key by key down
 * to the leaves; arrays are compared as a whole (a changed list is one field).
 * With `keys`, only those dot paths are compared.
 */
export function diffConfig(stored: unknown, expected: unknown, keys?: readonly string[]): ConfigDifference[] {
  const a = jsonNormal(stored);
  const b = jsonNormal(expected);
  const out: ConfigDifference[] = [];
  const walk = (x: unknown, y: unknown, at: string): void => {
    if (isPlainObject(x) && isPlainObject(y)) {
      const fields = [...new Set([...Object.keys(x), ...Object.keys(y)])].sort();
      for (const f of fields) walk(x[f], y[f], at ? `${at}.${f}` : f);
      return;
    }
    if (canonicalJson(x) !== canonicalJson(y)) out.push({ path: at || '(whole config)', stored: x, expected: y });
  };
  if (keys) for (const k of keys) walk(getPath(a, k), getPath(b, k), k);
  else walk(a, b, '');
  return out;
}

/** `lr: stored 0.001, expected 0.0003; model.layers: stored 6, expected (absent)` */
export function formatDifferences(diffs: readonly ConfigDifference[], storedLabel = 'stored', expectedLabel = 'expected'): string {
  const show = (v: unknown) => (v === undefined ? '(absent)' : JSON.stringify(v));
  return diffs.map((d) => `${d.path}: ${storedLabel} ${show(d.stored)}, ${expectedLabel} ${show(d.expected)}`).join('; ');
}

/** Flat raw data of a weight, its shape and safetensors dtype. Never creates tensors. */
function toSafeTensor(name: string, value: WeightValue): SafeTensor {
  if (value instanceof tf.Tensor) {
    ensure(!value.isDisposed, 'is already disposed', `weight '${name}'`, 'save before disposing the model, or clone the tensor');
    switch (value.dtype) {
      case 'float32':
        return { dtype: 'F32', shape: [...value.shape], data: value.dataSync() as Float32Array };
      case 'int32':
        return { dtype: 'I32', shape: [...value.shape], data: value.dataSync() as Int32Array };
      case 'bool':
        return { dtype: 'BOOL', shape: [...value.shape], data: Uint8Array.from(value.dataSync() as Uint8Array) };
      default:
        throw new OrderHeadError(`has dtype ${value.dtype}, which checkpoints do not store`, `weight '${name}'`, 'cast it to float32 or int32 first');
    }
  }
  if (value instanceof Float32Array) return { dtype: 'F32', shape: [value.length], data: value };
  if (value instanceof Int32Array) return { dtype: 'I32', shape: [value.length], data: value };
  if (value instanceof Uint8Array) return { dtype: 'U8', shape: [value.length], data: value };
  if (typeof value === 'object' && value !== null && 'dtype' in value && 'data' in value && 'shape' in value) return value;
  throw new OrderHeadError('is not a tf.Tensor, a typed array or {dtype, shape, data}', `weight '${name}'`, 'pass tensors or Float32Array/Int32Array/Uint8Array values');
}

/** The first non-finite value of float data, with the count, or undefined if all are finite. */
function firstNonFinite(data: Float32Array): { index: number; value: number; count: number } | undefined {
  let index = -1;
  let count = 0;
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i])) {
      if (index < 0) index = i;
      count++;
    }
  }
  return index < 0 ? undefined : { index, value: data[index], count };
}

/**
 * Write `<dir>/<name>.safetensors` atomically. The metadata carries the config
 * JSON, the step, the kind and `extra`, so the file is self-describing (also
 * to a PyTorch user reading `safe_open(...).metadata()`). Returns the path.
 * Refuses, leaving any existing file untouched, if a float weight holds NaN or
 * Inf: that tensor is named in the error.
 */
export function saveCheckpoint(dir: string, name: string, options: SaveCheckpointOptions): string {
  const { weights, config, step, extra = {} } = options;
  ensure(
    name.length > 0 && !name.includes('/') && !name.includes('\\') && !name.endsWith(EXT),
    `name '${name}' must be a plain file name without folder or ${EXT}`,
    'saveCheckpoint(name)',
    "build it with checkpointName('stage1', step)",
  );
  ensure(Number.isSafeInteger(step) && step >= 0, `step ${step} is not a non-negative integer`, 'saveCheckpoint(step)', 'pass the number of optimizer steps done');
  const kind = options.kind ?? name.split('-')[0];
  const file = path.join(dir, name + EXT);
  const names = Object.keys(weights);
  ensure(names.length > 0, 'no weights were given', file, 'pass the model weights as { name: tensor }');

  const tensors: Record<string, SafeTensor> = {};
  for (const n of names) {
    const t = toSafeTensor(n, weights[n]);
    if (t.dtype === 'F32') {
      const bad = firstNonFinite(t.data as Float32Array);
      if (bad) {
        throw new OrderHeadError(
          `weight '${n}' has ${bad.count} non-finite value(s) (first: ${bad.value} at flat index ${bad.index}); refusing to save, the previous checkpoint is unchanged`,
          file,
          'training diverged: resume from the last good checkpoint (latestCheckpoint) with a lower learning rate or gradient clipping',
        );
      }
    }
    tensors[n] = t;
  }
  let configJson: string | undefined;
  let extraJson: string | undefined;
  try {
    configJson = JSON.stringify(config);
    extraJson = JSON.stringify(extra);
  } catch (err) {
    throw new OrderHeadError(`config or extra cannot be stored as JSON (${(err as Error).message})`, file, 'keep configs to plain numbers, strings, booleans, arrays and objects');
  }
  ensure(configJson !== undefined && isPlainObject(config), 'config is not a plain object', file, 'pass the resolved config object');
  const metadata: Record<string, string> = {
    format: CHECKPOINT_FORMAT,
    kind,
    step: String(step),
    config: configJson,
    extra: extraJson ?? '{}',
    saved_at: new Date().toISOString(),
  };
  fs.mkdirSync(dir, { recursive: true });
  writeFileAtomic(file, encodeSafetensors(tensors, metadata), { io: options.io });
  return file;
}

/** Make tensors from decoded data; on failure, dispose the ones already made. */
function toTensors(file: string, decoded: Record<string, SafeTensor>): Record<string, tf.Tensor> {
  const out: Record<string, tf.Tensor> = {};
  try {
    for (const [name, t] of Object.entries(decoded)) {
      switch (t.dtype) {
        case 'F32':
          out[name] = tf.tensor(t.data as Float32Array, t.shape, 'float32');
          break;
        case 'I32':
          out[name] = tf.tensor(t.data as Int32Array, t.shape, 'int32');
          break;
        case 'U8':
          // tfjs has no uint8 dtype; int32 holds every value exactly.
          out[name] = tf.tensor(Int32Array.from(t.data), t.shape, 'int32');
          break;
        case 'BOOL':
          out[name] = tf.tensor(t.data as Uint8Array, t.shape, 'bool');
          break;
      }
    }
  } catch (err) {
    tf.dispose(Object.values(out));
    throw new OrderHeadError(`cannot create tensors (${(err as Error).message})`, file, 'check the tfjs backend is initialised (await tf.setBackend(...)) and has memory left');
  }
  return out;
}

/** The run folder a checkpoint belongs to (`<run>/checkpoints/<file>`), for messages. */
function runFolderOf(file: string): string {
  const parent = path.dirname(file);
  return path.basename(parent) === 'checkpoints' ? path.dirname(parent) : parent;
}

/**
 * Load and validate a checkpoint written by `saveCheckpoint`. Throws an
 * OrderHeadError naming the file when it is missing, truncated or corrupt, not
 * an OrderHead checkpoint, holds non-finite weights, or was trained with a
 * config that differs from `expectConfig` (each differing field is listed with
 * both values). The returned tensors are new; the caller disposes them.
 */
export function loadCheckpoint<C = Record<string, unknown>>(file: string, options: LoadCheckpointOptions = {}): LoadedCheckpoint<C> {
  const { tensors, metadata } = readSafetensors(file);
  const notOurs = (what: string) =>
    new OrderHeadError(`not an OrderHead checkpoint: ${what}`, file, 'load files written by saveCheckpoint(), or pass the right path');
  if (metadata.config === undefined) throw notOurs('its metadata has no config');
  let config: unknown;
  let extra: unknown;
  try {
    config = JSON.parse(metadata.config);
    extra = JSON.parse(metadata.extra ?? '{}');
  } catch {
    throw notOurs('the config or extra metadata is not valid JSON');
  }
  if (!isPlainObject(config)) throw notOurs('the stored config is not an object');
  const step = Number(metadata.step);
  if (!Number.isSafeInteger(step) || step < 0) throw notOurs(`the stored step '${metadata.step}' is not a non-negative integer`);
  const kind = metadata.kind ?? '';

  if (options.expectConfig !== undefined) {
    const diffs = diffConfig(config, options.expectConfig, options.compareKeys);
    if (diffs.length > 0) {
      throw new OrderHeadError(
        `the checkpoint (${kind || 'unknown kind'}, step ${step}) was trained with a different config: ${formatDifferences(diffs, 'checkpoint', 'current')}`,
        file,
        `load a checkpoint from a run whose config.json matches the current config, or set those fields back to the checkpoint's values (this one came from ${runFolderOf(file)}), or retrain ${kind || 'this stage'} with the current config`,
      );
    }
  }

  for (const [name, t] of Object.entries(tensors)) {
    if (t.dtype !== 'F32') continue;
    const bad = firstNonFinite(t.data as Float32Array);
    if (bad) {
      throw new OrderHeadError(
        `weight '${name}' has ${bad.count} non-finite value(s) (first: ${bad.value} at flat index ${bad.index})`,
        file,
        'this file was not written by saveCheckpoint (which refuses NaN/Inf) or is damaged: use an earlier checkpoint',
      );
    }
  }
  return {
    weights: toTensors(file, tensors),
    config: config as C,
    step,
    kind,
    extra: isPlainObject(extra) ? extra : {},
    metadata,
    path: file,
  };
}

export interface CheckpointRef {
  path: string;
  /** File name without `.safetensors`. */
  name: string;
  step: number;
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * Every checkpoint `<prefix>-step<N>[-tags].safetensors` in `dir`, oldest step
 * first (ties: the least recently modified first); empty when there is none or
 * the folder does not exist yet, which simply means "start from scratch". Temp
 * files from interrupted saves never match.
 */
export function listCheckpoints(dir: string, prefix: string): CheckpointRef[] {
  let files: string[];
  try {
    files = fs.readdirSync(dir);
  } catch (err) {
    if ((err as { code?: string }).code === 'ENOENT') return [];
    throw new OrderHeadError(`cannot list the folder (${(err as Error).message})`, dir, 'check the path and its permissions');
  }
  const pattern = new RegExp(`^${escapeRegExp(prefix)}-step(\\d+)(?:-[A-Za-z0-9._-]*)?${escapeRegExp(EXT)}$`);
  const found: (CheckpointRef & { mtime: number })[] = [];
  for (const f of files) {
    const m = pattern.exec(f);
    if (!m) continue;
    const full = path.join(dir, f);
    found.push({ path: full, name: f.slice(0, -EXT.length), step: Number(m[1]), mtime: fs.statSync(full).mtimeMs });
  }
  found.sort((a, b) => a.step - b.step || a.mtime - b.mtime);
  return found.map(({ path: p, name, step }) => ({ path: p, name, step }));
}

/** The checkpoint of `listCheckpoints(dir, prefix)` with the highest step (ties: the most recently modified), or undefined. */
export function latestCheckpoint(dir: string, prefix: string): CheckpointRef | undefined {
  return listCheckpoints(dir, prefix).at(-1);
}

/** Short hash of parameter values (name, shape and bytes, by sorted name): which weights a run started from. */
export function weightsFingerprint(params: Record<string, tf.Tensor>): string {
  const h = createHash('sha256');
  for (const k of Object.keys(params).sort()) {
    const t = params[k];
    h.update(`${k}:${t.shape.join('x')}|`);
    const d = t.dataSync() as Float32Array;
    h.update(Buffer.from(d.buffer, d.byteOffset, d.byteLength));
  }
  return h.digest('hex').slice(0, 16);
}

/** sha256 (16 hex) of a file: the same fingerprint the oracle manifest records for a backbone checkpoint. */
export function fileFingerprint(file: string): string {
  return createHash('sha256').update(fs.readFileSync(file)).digest('hex').slice(0, 16);
}

/**
 * Remove every `<prefix>-step*.safetensors` of `dir` except `keep`. Run after
 * writing a new best checkpoint: a run killed between that write and the
 * removal of the previous best leaves two, and the resumed run (which rewrites
 * the same newest file) clears the older one here.
 */
export function removeOtherCheckpoints(dir: string, prefix: string, keep: string): void {
  const re = new RegExp(`^${prefix}-step\\d+(?:-[A-Za-z0-9._-]*)?\\.safetensors$`); // prefixes are plain words ('best')
  for (const f of fs.readdirSync(dir)) {
    if (re.test(f) && path.join(dir, f) !== keep) fs.rmSync(path.join(dir, f), { force: true });
  }
}

/**
 * Copy checkpoint tensors into variables of the same names, refusing (before
 * assigning anything further) a weight that is missing or shaped otherwise;
 * the error names the weight, `file` and `fix`.
 */
export function assignWeights(vars: Record<string, tf.Variable>, weights: Record<string, tf.Tensor>, file: string, fix: string): void {
  for (const [name, v] of Object.entries(vars)) {
    const w = weights[name];
    ensure(w && tf.util.arraysEqual(w.shape, v.shape), `weight '${name}' is ${w ? `shaped [${w.shape}]` : 'missing'}, the model needs [${v.shape}]`, file, fix);
    v.assign(w);
  }
}
