/**
 * What the manifest, build, merge and load steps of an oracle dataset share:
 * the identity stamp of a dataset's files, the check of a part file against
 * it, and the labelled split of a token cache. Not part of the public API
 * (lib/oracle/index.ts does not export this file).
 */
import { createHash } from 'node:crypto';
import { OrderHeadError } from '../runtime/errors';
import { readSafetensors, SafeTensor } from '../runtime/safetensors';
import { canonicalJson } from '../runtime/checkpoint';
import type { TokenCache, TokenSplit } from '../tokenizer/cache';
import type { OracleDatasetConfig, OracleDatasetIdentity } from './dataset-config';
import { ORACLE_DATASET_FORMAT, partImages } from './layout';

/** The first 16 hex digits of sha256: the fingerprints of a manifest. */
export const sha16 = (data: Uint8Array | string): string => createHash('sha256').update(data).digest('hex').slice(0, 16);

/** The token-cache split a dataset labels. */
export function splitOf(cache: TokenCache, split: 'train' | 'test'): TokenSplit {
  return split === 'train' ? cache.train : cache.test;
}

/** Hash of the identity, stamped into every part so a stray part from another dataset is caught. */
export function identityHash(identity: OracleDatasetIdentity): string {
  return sha16(canonicalJson(identity));
}

/** Check an existing part file belongs to this dataset and covers the right images. */
export function checkPart(file: string, idHash: string, k: number, cfg: Pick<OracleDatasetConfig, 'images' | 'imagesPerPart' | 'statesPerImage'>): Record<string, SafeTensor> {
  const bad = (problem: string) => new OrderHeadError(problem, file, 'delete this part file: the next build run labels its images again');
  let decoded: ReturnType<typeof readSafetensors>;
  try {
    decoded = readSafetensors(file);
  } catch (err) {
    // The reader's generic fix speaks of checkpoints; a damaged part is simply labelled again.
    if (err instanceof OrderHeadError) throw bad(err.problem);
    throw err;
  }
  const { tensors, metadata } = decoded;
  const range = partImages(cfg, k);
  if (metadata.format !== ORACLE_DATASET_FORMAT || metadata.kind !== 'part') throw bad('not an oracle dataset part');
  if (metadata.identity !== idHash) throw bad(`the part belongs to another dataset (identity ${metadata.identity}, this dataset ${idHash})`);
  if (Number(metadata.part) !== k || Number(metadata.image_start) !== range.start || Number(metadata.image_end) !== range.end) {
    throw bad(`the part says it is part ${metadata.part} with images [${metadata.image_start}, ${metadata.image_end}), expected part ${k} with [${range.start}, ${range.end})`);
  }
  const n = (range.end - range.start) * cfg.statesPerImage;
  if (!tensors.image || tensors.image.shape[0] !== n) throw bad(`the part holds ${tensors.image?.shape[0] ?? 0} states, expected ${n}`);
  return tensors;
}
