/**
 * Curriculum Stage 2: the on-disk layout of an oracle dataset folder, and how
 * its parts and shards cut the images.
 *
 *   manifest.json                       config, identity (compared on reopen), backbone, geometry, counts
 *   part-<k>-of-<K>.safetensors         states of images [k·P, (k+1)·P), P = imagesPerPart, written atomically
 *   build-log.jsonl                     one line per part written: states, seconds, states/s, shard, pid
 *   oracle.safetensors                  all parts concatenated by `mergeOracleDataset`
 *
 * Parts are aligned to image indices, not to shards: `--shard i/N` takes the
 * contiguous run of parts [⌊iK/N⌋, ⌊(i+1)K/N⌋), so N processes label disjoint
 * parts, any sharding produces the same part files, and a killed run resumes
 * by skipping the parts that exist (a part file appears only when complete).
 */
import { OrderHeadError, ensure } from '../runtime/errors';
import { removeStaleTempFiles } from '../runtime/atomic';
import type { OracleDatasetConfig } from './dataset-config';

/** Value of `format` in manifest.json and in the metadata of every part and merged file. */
export const ORACLE_DATASET_FORMAT = 'orderhead-oracle/1';
/** The merged file of a dataset folder. */
export const ORACLE_DATASET_FILE = 'oracle.safetensors';
/** The per-part timing log of a dataset folder. */
export const ORACLE_BUILD_LOG = 'build-log.jsonl';

/** Shard i of N (0 <= i < N). */
export interface ShardSpec {
  index: number;
  count: number;
}

/**
 * Parse `i/N` (0-based shard i of N, e.g. `0/4` ... `3/4`). Anything else
 * ("3/2", "0/0", "a/b", "-1/2") is an OrderHeadError that shows the valid form.
 */
export function parseShard(spec: string | ShardSpec | undefined): ShardSpec {
  if (spec === undefined) return { index: 0, count: 1 };
  const fix = 'write the shard as i/N with whole numbers 0 <= i < N, e.g. --shard 0/4 ... --shard 3/4 for four processes (--shard 0/1, the default, labels everything)';
  if (typeof spec === 'object') {
    const { index, count } = spec;
    ensure(Number.isInteger(count) && count >= 1 && Number.isInteger(index) && index >= 0 && index < count,
      `invalid shard ${JSON.stringify(spec)}`, 'oracle shard', fix);
    return { index, count };
  }
  const m = /^\s*(\d+)\s*\/\s*(\d+)\s*$/.exec(String(spec));
  if (!m) throw new OrderHeadError(`invalid shard '${spec}': not of the form i/N with whole numbers`, 'oracle shard', fix);
  const index = Number(m[1]), count = Number(m[2]);
  if (count < 1) throw new OrderHeadError(`invalid shard '${spec}': N must be at least 1`, 'oracle shard', fix);
  if (index >= count) throw new OrderHeadError(`invalid shard '${spec}': shard index ${index} is not below the shard count ${count} (shards are numbered 0 .. ${count - 1})`, 'oracle shard', fix);
  return { index, count };
}

/** Number of part files of a config. */
export function partCount(cfg: Pick<OracleDatasetConfig, 'images' | 'imagesPerPart'>): number {
  return Math.ceil(cfg.images / cfg.imagesPerPart);
}

/** Images [start, end) of part k. */
export function partImages(cfg: Pick<OracleDatasetConfig, 'images' | 'imagesPerPart'>, k: number): { start: number; end: number } {
  const start = k * cfg.imagesPerPart;
  return { start, end: Math.min(cfg.images, start + cfg.imagesPerPart) };
}

/** The parts [first, end) shard i/N labels: a contiguous run, the same whatever else runs. */
export function shardParts(cfg: Pick<OracleDatasetConfig, 'images' | 'imagesPerPart'>, shard: ShardSpec): { first: number; end: number } {
  const K = partCount(cfg);
  return { first: Math.floor((shard.index * K) / shard.count), end: Math.floor(((shard.index + 1) * K) / shard.count) };
}

/** File name of part k of K. */
export function partFileName(k: number, K: number): string {
  return `part-${String(k).padStart(5, '0')}-of-${String(K).padStart(5, '0')}.safetensors`;
}

// Lives in runtime/atomic.ts now (run folders clear temp files of killed writers too); re-exported for existing callers.
export { removeStaleTempFiles };
