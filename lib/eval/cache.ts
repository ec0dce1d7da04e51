/**
 * Resumable evaluation: one file per finished setting, so an evaluation
 * killed part-way (SIGKILL, kernel restart, a time limit) restarts at the
 * first setting it had not finished (evaluateSettings with `cacheDir`).
 *
 * Key. A setting's outcome is reused only when everything that fixes its
 * numbers is the same. The identity (EvalCacheIdentity) holds: the setting
 * name; the policy's name and `fingerprint` (OrderPolicy.fingerprint: the
 * random-order seed, the planner / router weights hash and R); the backbone's
 * config and weightsFingerprint (lib/planner/joint.ts); the setting's block
 * geometry; the whole EvalConfig; and a fingerprint of the context (test
 * tokens and labels, the feature network's config and weights, the real-image
 * statistics, and the decoder's output on the first test image, so another
 * tokenizer is noticed too); plus the cache format and the host's byte order.
 * key = the first 16 hex digits of sha256(canonical JSON of the identity).
 *
 * File. `<cacheDir>/<slug of the setting name>-<key>.json`, written atomically
 * (writeFileAtomic: temp file, fsync, rename), so a kill leaves either no file
 * or a whole one. Contents: `{ format: EVAL_CACHE_FORMAT, key, identity,
 * savedAt, outcome }`, where `outcome` is the SettingResult as JSON with
 * exact encodings for what JSON cannot hold:
 *   - typed arrays -> `{ "$typed": "Float64Array", "base64": "<raw bytes>" }`
 *     (raw little-endian bytes, bit-exact; Float64Array, Float32Array,
 *     Int32Array, Uint8Array);
 *   - NaN, ±Infinity and -0 -> `{ "$number": "NaN" }` etc.;
 *   - a property whose value is undefined -> `{ "$undefined": 1 }` (kept, so a
 *     loaded outcome is deep-equal to the computed one).
 * Plain numbers round-trip exactly through JSON (shortest round-trip form).
 *
 * Never mixed. A file is used only when its stored key and identity equal the
 * current ones; a setting evaluated under another config (or backbone, planner,
 * context) has another key, so another file name: it is ignored (left on disk)
 * and the setting is recomputed. A file that does not parse or does not match
 * its own name is recomputed and atomically replaced.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { OrderHeadError } from '../runtime/errors';
import { writeFileAtomic } from '../runtime/atomic';
import { canonicalJson } from '../runtime/checkpoint';
import { weightsFingerprint } from '../runtime/checkpoint';
import { BlockGeometry } from '../order';
import type { EvalConfig } from './config';
import type { EvalContext } from './context';
import type { SettingResult } from './results';
import type { EvalSetting } from './settings';

/**
 * Format tag of an evaluation cache file; raised whenever SettingResult's
 * shape changes, so an older file is recomputed rather than read as the new
 * shape (/2: trajectory results hold the remaining-loss curve and an
 * `oracle` comparison on a subset of images).
 */
export const EVAL_CACHE_FORMAT = 'orderhead-eval-outcome/4'; // /3: exact NLL on shared images, scored by the first seed only; /4: the oracle comparison against two targets

/** Everything a cached outcome depends on (see the module comment). */
export interface EvalCacheIdentity {
  format: string;
  endianness: string;
  setting: string;
  policy: { name: string; fingerprint: string | null };
  backbone: { config: unknown; weights: string };
  geometry: { gridH: number; gridW: number; blockH: number; blockW: number };
  config: EvalConfig;
  context: string;
}

const bytesOf = (a: ArrayBufferView) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

/**
 * Fingerprint of an evaluation context (16 hex digits): test split, feature
 * network (config and weights), real-image statistics, and the decoder's image
 * of the first test grid. Costs one decode of one image and one read of the
 * feature network's weights.
 */
export function evalContextFingerprint(ctx: EvalContext): string {
  const h = createHash('sha256');
  h.update(bytesOf(ctx.testTokens)).update('|').update(bytesOf(ctx.testLabels)).update('|');
  const g = ctx.geo;
  h.update(canonicalJson({ gridH: g.gridH, gridW: g.gridW, blockH: g.blockH, blockW: g.blockW }));
  h.update(canonicalJson(ctx.featureNet.config)).update(weightsFingerprint(ctx.featureNet.params));
  const rs = ctx.realStats;
  for (const a of [rs.pool.mu, rs.pool.sigma, rs.spatial.mu, rs.spatial.sigma, rs.prRows]) h.update(bytesOf(a));
  h.update(`${rs.n}|${rs.poolDim}|${rs.spatialDim}|${rs.classes}`);
  const T = ctx.testLabels.length > 0 ? ctx.testTokens.length / ctx.testLabels.length : 0;
  if (T > 0 && Number.isInteger(T)) h.update(bytesOf(ctx.tokenizer.decode(ctx.testTokens.slice(0, T))));
  return h.digest('hex').slice(0, 16);
}

/**
 * The cache identity and key of `setting` (its first evaluation seed's policy,
 * as evaluateSetting names it). `contextFingerprint` defaults to
 * evalContextFingerprint(ctx); pass it when keying several settings.
 */
export function evalCacheIdentity(setting: EvalSetting, ctx: EvalContext, cfg: EvalConfig, contextFingerprint = evalContextFingerprint(ctx)): { key: string; identity: EvalCacheIdentity } {
  const policy = setting.policyFor?.(cfg.seeds[0]) ?? setting.policy;
  const geo: BlockGeometry = setting.geo ?? ctx.geo;
  const identity: EvalCacheIdentity = normalise({
    format: EVAL_CACHE_FORMAT,
    endianness: os.endianness(),
    setting: setting.name,
    policy: { name: policy.name, fingerprint: policy.fingerprint ?? null },
    backbone: { config: setting.backbone.cfg, weights: weightsFingerprint(setting.backbone.params) },
    geometry: { gridH: geo.gridH, gridW: geo.gridW, blockH: geo.blockH, blockW: geo.blockW },
    config: cfg,
    context: contextFingerprint,
  });
  return { key: cacheKey(identity), identity };
}

/** The key of an identity: the first 16 hex digits of sha256 of its canonical JSON. */
export function cacheKey(identity: unknown): string {
  return createHash('sha256').update(canonicalJson(identity)).digest('hex').slice(0, 16);
}

/** As stored: through JSON (undefined fields dropped), so the identity read back compares equal. */
const normalise = <T>(x: T): T => JSON.parse(JSON.stringify(x)) as T;

/** `<cacheDir>/<slug>-<key>.json`; the slug keeps [a-z0-9] runs of the setting name. */
export function evalCacheFile(cacheDir: string, settingName: string, key: string): string {
  const slug = settingName.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 60) || 'setting';
  return path.join(cacheDir, `${slug}-${key}.json`);
}

const TYPED = {
  Float64Array, Float32Array, Int32Array, Uint8Array,
} as const;
type TypedName = keyof typeof TYPED;

/** A JSON-safe copy of `v` with the exact encodings of the module comment. */
export function encodeExact(v: unknown): unknown {
  if (typeof v === 'number') {
    if (Number.isNaN(v) || !Number.isFinite(v)) return { $number: String(v) };
    if (Object.is(v, -0)) return { $number: '-0' };
    return v;
  }
  if (v === undefined) return { $undefined: 1 };
  if (v === null || typeof v !== 'object') return v;
  if (ArrayBuffer.isView(v)) {
    const name = v.constructor.name;
    if (!(name in TYPED)) throw new OrderHeadError(`cannot store a ${name}`, 'evaluation cache', 'store Float64Array, Float32Array, Int32Array or Uint8Array');
    return { $typed: name, base64: bytesOf(v).toString('base64') };
  }
  if (Array.isArray(v)) return v.map(encodeExact);
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v as Record<string, unknown>)) out[k] = encodeExact(x);
  return out;
}

/** The inverse of encodeExact. */
export function decodeExact(v: unknown): unknown {
  if (v === null || typeof v !== 'object') return v;
  if (Array.isArray(v)) return v.map(decodeExact);
  const o = v as Record<string, unknown>;
  if (typeof o.$typed === 'string' && typeof o.base64 === 'string') {
    const Ctor = TYPED[o.$typed as TypedName];
    if (!Ctor) throw new Error(`unknown typed array ${o.$typed}`);
    const b = Buffer.from(o.base64, 'base64');
    if (b.length % Ctor.BYTES_PER_ELEMENT !== 0) throw new Error(`${o.$typed} of ${b.length} bytes`);
    const copy = new Uint8Array(b.length); // aligned copy
    copy.set(b);
    return new Ctor(copy.buffer, 0, b.length / Ctor.BYTES_PER_ELEMENT);
  }
  if (typeof o.$number === 'string' && Object.keys(o).length === 1) return o.$number === '-0' ? -0 : Number(o.$number);
  if (o.$undefined === 1 && Object.keys(o).length === 1) return undefined;
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(o)) out[k] = decodeExact(x);
  return out;
}

/** A cached outcome, or why the file was not used (undefined: no file). */
export type EvalCacheRead = { outcome: SettingResult } | { ignored: string } | undefined;

/**
 * Read `file` if it holds the outcome for exactly this identity. A missing file
 * gives undefined; an unreadable, foreign or mismatching one gives `ignored`
 * with the reason (the caller recomputes and replaces it). Never throws for the
 * file's content.
 */
export function readEvalCache(file: string, key: string, identity: EvalCacheIdentity): EvalCacheRead {
  const read = readKeyedCache<SettingResult>(file, EVAL_CACHE_FORMAT, key, identity, (outcome) =>
    outcome && outcome.name === identity.setting && Array.isArray(outcome.seeds) && outcome.seeds.length === identity.config.seeds.length &&
      typeof outcome.metrics === 'object' && outcome.metrics !== null);
  return read && 'value' in read ? { outcome: read.value } : read;
}

/** Write `outcome` for `identity` to `file` atomically (the folder must exist). */
export function writeEvalCache(file: string, key: string, identity: EvalCacheIdentity, outcome: SettingResult): void {
  writeKeyedCache(file, EVAL_CACHE_FORMAT, key, identity, outcome);
}

/**
 * The file format every evaluation cache shares (settings here, the greedy
 * oracle bound in headroom.ts): `{ format, key, identity, savedAt, outcome }`,
 * the outcome in the exact encodings of the module comment. A file is used
 * only when format, key and identity all match and `complete` accepts the
 * decoded outcome; otherwise `ignored` says why (never throws for content).
 */
export function readKeyedCache<T>(file: string, format: string, key: string, identity: unknown, complete: (value: T) => boolean):
  { value: T } | { ignored: string } | undefined {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as { code?: string }).code === 'ENOENT') return undefined;
    return { ignored: `cannot read it (${(err as Error).message})` };
  }
  try {
    const doc = JSON.parse(text) as Record<string, unknown>;
    if (doc.format !== format) return { ignored: `format '${String(doc.format)}' is not ${format}` };
    if (doc.key !== key || canonicalJson(doc.identity) !== canonicalJson(identity)) return { ignored: 'written for another setting, config, backbone or context' };
    const value = decodeExact(doc.outcome) as T;
    return complete(value) ? { value } : { ignored: 'its outcome is incomplete' };
  } catch (err) {
    return { ignored: `it does not parse (${(err as Error).message})` };
  }
}

/** Write `value` as a keyed cache file (readKeyedCache's format), atomically; the folder must exist. */
export function writeKeyedCache(file: string, format: string, key: string, identity: unknown, value: unknown): void {
  const doc = { format, key, identity, savedAt: new Date().toISOString(), outcome: encodeExact(value) };
  writeFileAtomic(file, `${JSON.stringify(doc)}\n`);
}
