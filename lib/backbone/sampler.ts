/**
 * Generation apart from the model (LlamaGen style): KV-cache decoding under any
 * order policy, with temperature, top-k, top-p and classifier-free guidance
 * combined on logits as LlamaGen does:
 *
 *   logits = uncond + s · (cond − uncond)
 *
 * The policy picks each next block from what is visible; tokens inside a block
 * are decoded in raster order. The planner reaches the sampler only through
 * this order-policy interface.
 */
import * as tf from '@tensorflow/tfjs';
import { BlockHiddenSums, DecodingContext, teacherForcedContexts } from './decoding-context';
import { ForwardOut, GPT } from './gpt';
import { decodeStep, disposeCache, emptyCache, extend } from './kv-decoder';
import { checkTokenIds, seqLen } from './config';
import { BlockGeometry, blockCells, checkPolicyChoice, emptyState, OrderPolicy, PolicyState, reveal } from '../order';
import { OrderHeadError } from '../runtime/errors';
import { rng, Rng } from '../runtime/seed';

export interface SampleOptions {
  /** Class id per image (B images). */
  classes: Int32Array;
  /** Chooses each next block. */
  policy: OrderPolicy;
  geometry: BlockGeometry;
  /** Softmax temperature; default 1. */
  temperature?: number;
  /** Keep the k most likely tokens (0 = off); default 0. */
  topK?: number;
  /** Keep the smallest set with probability mass >= p (1 = off); default 1. */
  topP?: number;
  /** Classifier-free guidance scale s (1 = off); default 1. */
  cfgScale?: number;
  seed?: number;
  /** Called after each block (progress displays). */
  onBlock?: (done: number, total: number) => void;
  /**
   * Decode with a KV cache (default true): one new slot per token. false
   * recomputes the whole prefix for every token (a full forward pass of
   * t + 1 slots at step t), the baseline `npm run bench` measures the cache
   * against; same samples up to float rounding.
   */
  kvCache?: boolean;
}

export interface SampleResult {
  /** B x T token grids, indexed by cell. */
  tokens: Int32Array;
  /** The block order each image was generated in. */
  blockOrders: number[][];
  /** B x T: the cell decoded at each step. */
  cells: Int32Array;
}

let keyA = new Uint32Array(0), keyB = new Uint32Array(0), idxA = new Int32Array(0), idxB = new Int32Array(0);
const radixCount = new Int32Array(256);

/**
 * Token ids by descending logit, ties by ascending id: the order of a stable
 * `sort((a, b) => logits[b] - logits[a])`, about 4x faster. Each logit's
 * float32 bits are mapped to an order-preserving unsigned integer, inverted
 * (descending), and sorted by a stable LSD radix sort (4 passes of 8 bits),
 * which keeps equal logits in id order (a pass whose byte is the same for
 * every key is skipped). Falls back to the comparator sort for NaN logits.
 * The returned array is reused by the next call.
 */
export function sortedDescending(logits: Float32Array): Int32Array {
  const V = logits.length;
  if (keyA.length !== V) {
    keyA = new Uint32Array(V); keyB = new Uint32Array(V); idxA = new Int32Array(V); idxB = new Int32Array(V);
  }
  const bits = new Uint32Array(logits.buffer, logits.byteOffset, V);
  let kIn = keyA, kOut = keyB, iIn = idxA, iOut = idxB;
  for (let i = 0; i < V; i++) {
    const x = logits[i];
    if (x !== x) { // NaN: the comparator's own (engine-defined) order
      const order = Array.from({ length: V }, (_, j) => j).sort((a, b) => logits[b] - logits[a]);
      idxA.set(order);
      return idxA;
    }
    let u = bits[i];
    if (u === 0x80000000) u = 0; // -0 ties with +0, as in the comparator
    const s = u & 0x80000000 ? ~u >>> 0 : (u | 0x80000000) >>> 0; // ascending floats -> ascending uints
    kIn[i] = ~s >>> 0; // descending
    iIn[i] = i;
  }
  const count = radixCount;
  for (let shift = 0; shift < 32; shift += 8) {
    count.fill(0);
    for (let i = 0; i < V; i++) count[(kIn[i] >>> shift) & 255]++;
    if (count[(kIn[0] >>> shift) & 255] === V) continue; // one digit value (sign and exponent bytes, often): order unchanged
    let sum = 0;
    for (let d = 0; d < 256; d++) { const c = count[d]; count[d] = sum; sum += c; }
    for (let i = 0; i < V; i++) {
      const k = kIn[i], p = count[(k >>> shift) & 255]++;
      kOut[p] = k;
      iOut[p] = iIn[i];
    }
    const kt = kIn; kIn = kOut; kOut = kt;
    const it = iIn; iIn = iOut; iOut = it;
  }
  return iIn;
}

let probScratch = new Float64Array(0);

/**
 * Sample one token from logits with temperature, top-k and top-p.
 *
 * With top-k or top-p, tokens are ranked by logit (ties by id), cut, and the
 * draw walks that ranking. Without either (the default), the draw walks the
 * vocabulary in id order: the same distribution, no sort (the sort was a
 * fifth of KV-cache sampling time at batch 64).
 */
export function sampleToken(logits: Float32Array, r: Rng, temperature = 1, topK = 0, topP = 1): number {
  const V = logits.length;
  if (temperature <= 0) { // greedy
    let best = 0;
    for (let i = 1; i < V; i++) if (logits[i] > logits[best]) best = i;
    return best;
  }
  if (probScratch.length < V) probScratch = new Float64Array(V);
  const probs = probScratch;
  if ((topK <= 0 || topK >= V) && topP >= 1) {
    let max = -Infinity;
    for (let i = 0; i < V; i++) if (logits[i] > max) max = logits[i];
    let z = 0;
    for (let i = 0; i < V; i++) { const p = Math.exp((logits[i] - max) / temperature); probs[i] = p; z += p; }
    if (z === z && max !== -Infinity) { // no NaN, not all -Infinity: otherwise the ranked path decides
      let u = r.next() * z;
      for (let i = 0; i < V; i++) { u -= probs[i]; if (u <= 0 && probs[i] > 0) return i; }
      for (let i = V - 1; i >= 0; i--) if (probs[i] > 0) return i; // rounding left u > 0: the last token with mass
    }
  }
  const idx = sortedDescending(logits);
  const keep = topK > 0 ? Math.min(topK, V) : V;
  const max = logits[idx[0]];
  let z = 0;
  for (let j = 0; j < keep; j++) { probs[j] = Math.exp((logits[idx[j]] - max) / temperature); z += probs[j]; }
  let cut = keep;
  if (topP < 1) {
    let mass = 0;
    for (let j = 0; j < keep; j++) { mass += probs[j] / z; if (mass >= topP) { cut = j + 1; break; } }
  }
  let zc = 0;
  for (let j = 0; j < cut; j++) zc += probs[j];
  let u = r.next() * zc;
  for (let j = 0; j < cut; j++) { u -= probs[j]; if (u <= 0) return idx[j]; }
  return idx[cut - 1];
}

/** Generate B images of tokens under an order policy. Leaks no tensors. */
export async function sampleImages(m: GPT, opts: SampleOptions): Promise<SampleResult> {
  const { classes, policy, geometry: geo } = opts;
  const temperature = opts.temperature ?? 1, topK = opts.topK ?? 0, topP = opts.topP ?? 1, s = opts.cfgScale ?? 1;
  const B = classes.length, T = seqLen(m.cfg), V = m.cfg.vocabSize;
  if (geo.numTokens !== T || geo.gridW !== m.cfg.gridW) {
    throw new OrderHeadError(`block geometry is ${geo.gridH}x${geo.gridW} tokens, the model's grid is ${m.cfg.gridH}x${m.cfg.gridW}`,
      'sampleImages(geometry)', 'build the geometry from the model config (gridH, gridW)');
  }
  checkTokenIds(m.cfg, [], classes, 'sampleImages(classes)', true);
  const guided = s !== 1;
  const rows = guided ? 2 * B : B; // CFG: conditional rows, then the same images with the null class
  const r = rng(opts.seed ?? 0);
  const tokens = new Int32Array(B * T).fill(-1);
  const cells = new Int32Array(B * T);
  let states: PolicyState[] = Array.from({ length: B }, (_, i) => ({ ...emptyState(geo), index: i, classId: classes[i] }));
  // Preallocated for the whole image: new slots are written in place (no copy of the cache per token).
  const cache = emptyCache(m, { capacity: T });
  const input = new Int32Array(rows), inCell = new Int32Array(rows).fill(-1), tgtCell = new Int32Array(rows);
  for (let b = 0; b < rows; b++) input[b] = b < B ? classes[b] : m.cfg.numClasses;
  const cached = opts.kvCache ?? true;
  // Without the cache: every row's slots so far (inputs, input cells, target cells), recomputed each token.
  const hist = cached ? null : { inputs: new Int32Array(rows * T), inCells: new Int32Array(rows * T), tgtCells: new Int32Array(rows * T) };
  const step = (t: number): ForwardOut => {
    if (!hist) return decodeStep(m, cache, input, inCell, tgtCell);
    const L = t + 1;
    for (let b = 0; b < rows; b++) { hist.inputs[b * T + t] = input[b]; hist.inCells[b * T + t] = inCell[b]; hist.tgtCells[b * T + t] = tgtCell[b]; }
    const pack = (a: Int32Array) => { const o = new Int32Array(rows * L); for (let b = 0; b < rows; b++) o.set(a.subarray(b * T, b * T + L), b * L); return o; };
    const full = extend(m, emptyCache(m), { B: rows, L, inputs: pack(hist.inputs), inCells: pack(hist.inCells), tgtCells: pack(hist.tgtCells) }, false);
    const last = (x: tf.Tensor2D) => tf.tidy(() => tf.reshape(tf.slice(tf.reshape(x, [rows, L, x.shape[1]]), [0, L - 1, 0], [rows, 1, x.shape[1]]), [rows, x.shape[1]]) as tf.Tensor2D);
    const res = { logits: last(full.logits), hidden: last(full.hidden) };
    tf.dispose([full.logits, full.hidden]);
    return res;
  };
  // What a policy reads from decoded slots (decoding-context.ts): this decoder's own cache when it runs the
  // backbone the policy reads, else a second cache of that backbone fed with each revealed block's tokens.
  const ownContext = cached && policy.contextOf === m;
  const sums = ownContext ? new BlockHiddenSums(B, geo, m.cfg.dModel) : null;
  const fed = policy.contextOf && !ownContext ? teacherForcedContexts(policy.contextOf as GPT, geo, tokens, classes) : undefined;
  let t = 0;
  try {
    for (let k = 0; k < geo.numBlocks; k++) {
      const fedContexts = fed?.contexts(states);
      states = states.map((st, i) => {
        const context: DecodingContext | undefined = sums ? (t > 0 ? { model: m, cache, row: i, blockHidden: sums.row(i) } : undefined) : fedContexts?.[i];
        return { ...st, tokens: tokens.subarray(i * T, (i + 1) * T), context };
      });
      const chosen = await policy.nextBlocks(states);
      if (chosen.length !== B) {
        throw new OrderHeadError(`returned ${chosen.length} blocks for ${B} images`, `policy '${policy.name}'`, 'return one block per state');
      }
      chosen.forEach((blk, i) => checkPolicyChoice(states[i], blk, policy.name));
      const blockCellLists = chosen.map((blk) => blockCells(geo, blk));
      for (let j = 0; j < geo.tokensPerBlock; j++, t++) {
        for (let b = 0; b < rows; b++) tgtCell[b] = blockCellLists[b % B][j];
        const out = step(t);
        const logits = tf.tidy(() => {
          if (!guided) return out.logits;
          const cond = tf.slice(out.logits, [0, 0], [B, V]), uncond = tf.slice(out.logits, [B, 0], [B, V]);
          return tf.add(uncond, tf.mul(tf.sub(cond, uncond), s));
        });
        const lv = logits.dataSync() as Float32Array;
        sums?.add(out.hidden.dataSync(), inCell.subarray(0, B));
        tf.dispose([out.logits, out.hidden, logits]);
        for (let b = 0; b < B; b++) {
          const cell = tgtCell[b];
          const tok = sampleToken(lv.subarray(b * V, (b + 1) * V), r, temperature, topK, topP);
          tokens[b * T + cell] = tok;
          cells[b * T + t] = cell;
        }
        for (let b = 0; b < rows; b++) { input[b] = tokens[(b % B) * T + tgtCell[b]]; inCell[b] = tgtCell[b]; }
      }
      states = states.map((st, i) => reveal(st, chosen[i]));
      opts.onBlock?.(k + 1, geo.numBlocks);
    }
  } finally {
    disposeCache(cache);
    fed?.dispose();
  }
  return { tokens, blockOrders: states.map((st) => st.sequence.slice()), cells };
}
