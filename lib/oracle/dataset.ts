/**
 * Curriculum Stage 2: the oracle dataset (METHOD.md §6.2; Algorithms 1 and 2).
 *
 * For each image of a token split, sample partial contexts S (visible block
 * sets) of every size from empty to all-but-one block (states.ts), score every
 * candidate block with the frozen Stage 1 backbone (`scoreStates`,
 * lib/oracle/utility.ts) and store, per state: the image, |S|, the visible
 * mask and its reveal sequence, the utility vectors u and u_extrap (NaN on
 * visible blocks), both labels a* = argmax u and a*_extrap = argmax u_extrap,
 * L_rest(S) and the token-wise losses l_j(S). The planner's inputs (backbone
 * hidden states) are not stored: they are recomputable from the image's
 * tokens, the visible sequence and the backbone, whose path and fingerprint
 * the manifest records.
 *
 * The steps, one file each: the config (dataset-config.ts), the folder layout,
 * parts and shards (layout.ts), the state sampling (states.ts), the manifest
 * and backbone checks (manifest.ts), the build (build.ts), the merge
 * (merge.ts); this file loads a merged dataset.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { OrderHeadError, ensure } from '../runtime/errors';
import { readSafetensors } from '../runtime/safetensors';
import { blockGeometry, BlockGeometry } from '../order';
import { TokenCache } from '../tokenizer/cache';
import { OracleItem, Reading, READINGS } from './utility';
import { oneOf } from '../runtime/errors';
import { OracleLabeling } from './dataset-config';
import { WeightName, WEIGHTS } from './weights';
import { ORACLE_DATASET_FILE, ORACLE_DATASET_FORMAT } from './layout';
import { OracleManifest, readOracleManifest } from './manifest';
import { identityHash, splitOf } from './dataset-files';

/** One labeling of the dataset's states (the primary labels every state, compare ones a subset). */
export interface OracleLabelSet extends OracleLabeling {
  /** True for the config's reading/weight (every state labelled). */
  primary: boolean;
  /** [n]: 1 where this labeling was computed. */
  has: Uint8Array;
  /** [n, numBlocks]: u(a|S), NaN on visible blocks (and where `has` is 0). */
  u: Float32Array;
  /** [n, numBlocks]: u_extrap(a|S) under this labeling's weight, NaN on visible blocks. */
  uExtrap: Float32Array;
  /** [n]: argmax u, -1 where not computed. */
  aStar: Int32Array;
  /** [n]: argmax u_extrap, -1 where not computed. */
  aStarExtrap: Int32Array;
  /** [n]: L_rest(S). */
  lRest: Float32Array;
}

/** A merged oracle dataset as typed arrays (row i = state i; images in order, states in order within). */
export interface OracleDataset {
  dir: string;
  manifest: OracleManifest;
  geo: BlockGeometry;
  /** Number of states. */
  n: number;
  image: Int32Array;
  state: Int32Array;
  /** |S| per state. */
  size: Int32Array;
  classId: Int32Array;
  /** [n, numBlocks]: the visible blocks in reveal order, then -1. */
  sequence: Int32Array;
  /** [n, numBlocks]: 1 = visible. */
  visible: Uint8Array;
  /** [n, numTokens]: l_j(S) of the primary reading, NaN on visible cells. */
  tokenLoss: Float32Array;
  /** labelings[0] is the primary; the rest are the compare labelings, in manifest order. */
  labelings: OracleLabelSet[];
}

/** Load `<dir>/oracle.safetensors` (after `mergeOracleDataset`) with its manifest. */
export function loadOracleDataset(dir: string): OracleDataset {
  const manifest = readOracleManifest(dir);
  const file = path.join(dir, ORACLE_DATASET_FILE);
  ensure(fs.existsSync(file), 'the dataset is not merged yet (no oracle.safetensors)', dir,
    `merge it: mergeOracleDataset(dir) or \`node dist/lib/oracle/cli.js merge --run ${dir}\` (after every shard finished)`);
  const { tensors, metadata } = readSafetensors(file);
  const bad = (problem: string) => new OrderHeadError(problem, file, 'merge again (mergeOracleDataset) or rebuild the dataset');
  if (metadata.format !== ORACLE_DATASET_FORMAT || metadata.kind !== 'merged') throw bad('not a merged oracle dataset');
  if (metadata.identity !== identityHash(manifest.identity)) throw bad('the merged file does not match manifest.json (another dataset)');
  const g = manifest.geometry;
  const geo = blockGeometry({ gridH: g.gridH, gridW: g.gridW, blockH: g.blockH, blockW: g.blockW });
  const n = manifest.counts.states;
  const get = <A>(name: string, dtype: string, width: number): A => {
    const t = tensors[name];
    if (!t || t.dtype !== dtype || t.data.length !== n * width) throw bad(`tensor '${name}' is missing or not ${dtype} [${n}${width > 1 ? `, ${width}` : ''}]`);
    return t.data as unknown as A;
  };
  const nb = geo.numBlocks;
  const label = (prefix: string, l: OracleLabeling, primary: boolean): OracleLabelSet => ({
    ...l, primary,
    has: primary ? new Uint8Array(n).fill(1) : get<Uint8Array>(`${prefix}has`, 'U8', 1),
    u: get<Float32Array>(`${prefix}u`, 'F32', nb),
    uExtrap: get<Float32Array>(`${prefix}uExtrap`, 'F32', nb),
    aStar: get<Int32Array>(`${prefix}aStar`, 'I32', 1),
    aStarExtrap: get<Int32Array>(`${prefix}aStarExtrap`, 'I32', 1),
    lRest: get<Float32Array>(`${prefix}lRest`, 'F32', 1),
  });
  return {
    dir, manifest, geo, n,
    image: get('image', 'I32', 1), state: get('state', 'I32', 1), size: get('size', 'I32', 1), classId: get('classId', 'I32', 1),
    sequence: get('sequence', 'I32', nb), visible: get('visible', 'U8', nb), tokenLoss: get('tokenLoss', 'F32', geo.numTokens),
    labelings: [label('', manifest.labelings.primary, true), ...manifest.labelings.compare.map((c, k) => label(`cmp${k}.`, c, false))],
  };
}

/** The visible blocks of state i in reveal order. */
export function oracleSequence(ds: OracleDataset, i: number): number[] {
  const nb = ds.geo.numBlocks;
  return Array.from(ds.sequence.subarray(i * nb, i * nb + ds.size[i]));
}

/** The scorer input of state i (its image's tokens from the token cache): recompute labels or backbone hidden states. */
export function oracleItem(ds: OracleDataset, i: number, cache: TokenCache): OracleItem {
  const split = splitOf(cache, ds.manifest.config.split);
  const T = ds.geo.numTokens;
  const img = ds.image[i];
  return { tokens: split.tokens.slice(img * T, (img + 1) * T), classId: ds.classId[i], visible: oracleSequence(ds, i) };
}

const labelingName = (l: OracleLabeling) => `${l.reading}/${l.weight}`;

/**
 * The primary labeling, checked against the reading a stage is configured
 * for (`field` names that setting) and, with `expect`, against its weight: a
 * planner trained on another reading's or weight's labels would silently
 * answer another question. Nothing is changed on refusal; the error names the
 * dataset's manifest, the field and both ways to agree.
 */
export function primaryLabelSet(ds: OracleDataset, reading: Reading, field: string, expect?: { weight: WeightName; field: string }): OracleLabelSet {
  oneOf(reading, READINGS, field);
  const p = ds.labelings[0];
  const manifest = path.join(ds.dir, 'manifest.json');
  if (p.reading !== reading) {
    throw new OrderHeadError(
      `the oracle dataset's primary labels are of the ${p.reading} reading (labelings.primary.reading), the stage is configured for ${reading} (${field})`,
      manifest,
      `rebuild the oracle dataset with oracle.reading = '${reading}' (notebooks/03_stage2_oracle.ipynb), or set ${field} = '${p.reading}'`,
    );
  }
  if (expect) {
    oneOf(expect.weight, WEIGHTS, expect.field);
    if (p.weight !== expect.weight) {
      throw new OrderHeadError(
        `the oracle dataset's primary u_extrap uses w = ${p.weight} (labelings.primary.weight), the stage is configured for w = ${expect.weight} (${expect.field})`,
        manifest,
        `build an oracle dataset with oracle.weight = '${expect.weight}' in another folder (notebooks/03_stage2_oracle.ipynb; PRIMARY_WEIGHT in ` +
          `lib/oracle/weights.ts is the default of both fields), or set ${expect.field} = '${p.weight}' to train on this dataset's labels`,
      );
    }
  }
  return p;
}

/** A labeling the dataset holds (primary or compare), by reading and weight (default: the first of that reading). */
export function labelSet(ds: OracleDataset, reading: Reading, weight?: string): OracleLabelSet {
  oneOf(reading, READINGS, 'reading');
  const l = ds.labelings.find((x) => x.reading === reading && (weight === undefined || x.weight === weight));
  if (!l) {
    const want = weight === undefined ? `the ${reading} reading` : `${reading}/${weight}`;
    throw new OrderHeadError(
      `the oracle dataset holds ${ds.labelings.map(labelingName).join(', ')} (reading/weight), not ${want}`,
      path.join(ds.dir, 'manifest.json'),
      `add { reading: '${reading}', weight: '${weight ?? ds.labelings[0].weight}' } to oracle.compare and rebuild the dataset (notebooks/03_stage2_oracle.ipynb)`,
    );
  }
  return l;
}
