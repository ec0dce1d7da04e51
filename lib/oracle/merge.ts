/**
 * Curriculum Stage 2: merging an oracle dataset's parts into
 * oracle.safetensors once every shard is done.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { OrderHeadError, ensure } from '../runtime/errors';
import { removeStaleTempFiles, writeFileAtomic } from '../runtime/atomic';
import { encodeSafetensors, SafeTensor } from '../runtime/safetensors';
import { ORACLE_DATASET_FILE, ORACLE_DATASET_FORMAT, partCount, partFileName } from './layout';
import { readOracleManifest } from './manifest';
import { checkPart, identityHash } from './dataset-files';

const PART_RE = /^part-(\d+)-of-(\d+)\.safetensors$/;

export interface MergeOracleResult {
  file: string;
  states: number;
  parts: number;
  removedTempFiles: string[];
}

/**
 * Concatenate every part into `<dir>/oracle.safetensors` (atomically), after
 * checking that all parts exist, belong to this dataset, and hold every
 * (image, state) pair exactly once. Missing parts are listed with the command
 * that fills them.
 */
export function mergeOracleDataset(dir: string): MergeOracleResult {
  const manifest = readOracleManifest(dir);
  const cfg = manifest.config;
  const K = partCount(cfg);
  const present = new Set<number>();
  const foreign: string[] = [];
  for (const f of fs.readdirSync(dir)) {
    const m = PART_RE.exec(f);
    if (!m) continue;
    if (Number(m[2]) !== K || Number(m[1]) >= K) foreign.push(f);
    else present.add(Number(m[1]));
  }
  ensure(foreign.length === 0, `holds part files of another partition (${foreign.slice(0, 3).join(', ')}): this dataset has ${K} parts`, dir,
    'delete those files (they do not belong to this manifest)');
  const missing: number[] = [];
  for (let k = 0; k < K; k++) if (!present.has(k)) missing.push(k);
  if (missing.length > 0) {
    const shown = missing.slice(0, 10).join(', ') + (missing.length > 10 ? `, ... (${missing.length - 10} more)` : '');
    throw new OrderHeadError(`the dataset is incomplete: ${missing.length} of ${K} parts are missing (parts ${shown})`, dir,
      `finish the build first: buildOracleDataset(dir, config) or \`node dist/lib/oracle/cli.js build --run ${dir}\` (with the --shard of each unfinished process); it resumes where it stopped`);
  }
  // Complete: no shard is still writing, so every temp file left is stale.
  const removedTempFiles = removeStaleTempFiles(dir);
  const idHash = identityHash(manifest.identity);
  const S = cfg.statesPerImage;
  const seen = new Uint8Array(cfg.images * S);
  const chunks: Record<string, SafeTensor[]> = {};
  for (let k = 0; k < K; k++) {
    const file = path.join(dir, partFileName(k, K));
    const tensors = checkPart(file, idHash, k, cfg);
    const img = tensors.image.data as Int32Array, st = tensors.state.data as Int32Array;
    for (let i = 0; i < img.length; i++) {
      const key = img[i] * S + st[i];
      ensure(img[i] >= 0 && img[i] < cfg.images && st[i] >= 0 && st[i] < S, `holds state (image ${img[i]}, state ${st[i]}) outside the dataset`, file, 'delete this part and build again');
      ensure(seen[key] === 0, `holds state (image ${img[i]}, state ${st[i]}) that another part also holds (duplicate)`, file, 'delete this part and build again');
      seen[key] = 1;
    }
    for (const [name, t] of Object.entries(tensors)) (chunks[name] ??= []).push(t);
  }
  const first = seen.indexOf(0);
  ensure(first < 0, `state (image ${Math.floor(first / S)}, state ${first % S}) is in no part`, dir, 'delete the part of that image and build again');
  const merged: Record<string, SafeTensor> = {};
  for (const [name, list] of Object.entries(chunks)) {
    ensure(list.length === K, `tensor '${name}' is in ${list.length} of ${K} parts`, dir, 'delete the parts that lack it and build again');
    const rows = list.reduce((a, t) => a + t.shape[0], 0);
    const inner = list[0].shape.slice(1);
    const width = inner.reduce((a, b) => a * b, 1);
    const Ctor = list[0].data.constructor as Float32ArrayConstructor | Int32ArrayConstructor | Uint8ArrayConstructor;
    const data = new Ctor(rows * width);
    let off = 0;
    for (const t of list) {
      data.set(t.data as never, off);
      off += t.data.length;
    }
    merged[name] = { dtype: list[0].dtype, shape: [rows, ...inner], data };
  }
  const file = path.join(dir, ORACLE_DATASET_FILE);
  writeFileAtomic(file, encodeSafetensors(merged, { format: ORACLE_DATASET_FORMAT, kind: 'merged', identity: idHash, manifest: JSON.stringify(manifest) }));
  return { file, states: cfg.images * S, parts: K, removedTempFiles };
}
