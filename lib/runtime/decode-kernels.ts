/**
 * Kernels for KV-cache decoding (lib/backbone/kv-decoder.ts `extend`), on the
 * backends whose memory is local (wasm, cpu):
 *
 * - `OrderHeadDecodeAttention`: softmax(q·Kᵀ·scale)·V for one query per
 *   (sample, head) over the first `n` slots of a cache, in one kernel. The
 *   op-by-op version is five kernels per layer (product, scale, mask,
 *   softmax, product), and the two products are batches of B·H tiny slices,
 *   each a separate XNNPACK call on wasm. Reading only the first n slots lets
 *   the cache be a preallocated buffer (below) with no copy of its prefix.
 *   On wasm its two inner loops are WebAssembly SIMD (wasm-simd.ts).
 * - `OrderHeadQueryAttention`: the same for L independent one-step queries
 *   per sequence, each over the cached prefix and its own slot only (the
 *   planner's per-block queries): no copy of the prefix, no mask, no batch
 *   of B·H tiny matrix products.
 * - `OrderHeadRMSNorm`, `OrderHeadRope`: RMSNorm and 2D rotary of small row
 *   blocks as one kernel each instead of 6 and ~8 tfjs kernels: decoding one
 *   token is dominated by per-kernel dispatch at small batch.
 * - `writeSlotsInPlace`: copy new keys/values into a preallocated cache
 *   buffer [B, H, capacity, hd] at slot `at`, in place. A growing cache is a
 *   concat per layer per token, which copies the whole cache every token
 *   (quadratic in the image length; ~1 ms per concat at batch 64 late in a
 *   64-token image on wasm).
 *
 * All are forward-only (decoding is never differentiated): `extend` uses them
 * only outside gradient tapes (`decodeKernelsAvailable`) and the plain ops
 * elsewhere. Checked against the plain ops in tests/unit/backbone/decode.test.ts.
 */
import * as tf from '@tensorflow/tfjs';
import { CpuBackend, cpuF32, hasLocalMemory, heapF32, localF32, WasmBackend, wasmHeap } from './backend-memory';
import { simdRows } from './wasm-simd';

export const DECODE_ATTENTION = 'OrderHeadDecodeAttention';
export const QUERY_ATTENTION = 'OrderHeadQueryAttention';

/** Cached slots read, queries per cached sequence (1 when decoding), score scale. */
interface AttentionAttrs { n: number; L: number; scale: number }

/**
 * Core loop: O[r,h,:] = softmax_j(Q[r,h,:]·K[b,h,j,:]·scale) V[b,h,j,:] over the
 * j < n cached slots of row b = r / L (b = 0: a shared prefix), and, with
 * self keys Ks, Vs [R, H, hd], one more term: query r's own slot.
 * hd is a multiple of 4 (validateGPTConfig): four independent accumulators per
 * dot product and per output quadruple keep the FP pipeline full (1.8x over the
 * plain loops). Accumulates in double.
 */
function attendOne(Q: Float32Array, K: Float32Array, V: Float32Array, O: Float32Array,
  R: number, L: number, Bk: number, H: number, S: number, hd: number, n: number, scale: number, Ks?: Float32Array, Vs?: Float32Array): void {
  const p = new Float64Array(n + 1);
  const dot = (A: Float32Array, ao: number, Bv: Float32Array, bo: number): number => {
    let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (let d = 0; d < hd; d += 4) {
      s0 += A[ao + d] * Bv[bo + d];
      s1 += A[ao + d + 1] * Bv[bo + d + 1];
      s2 += A[ao + d + 2] * Bv[bo + d + 2];
      s3 += A[ao + d + 3] * Bv[bo + d + 3];
    }
    return ((s0 + s1) + (s2 + s3)) * scale;
  };
  for (let r = 0; r < R; r++) {
    const kb = Bk === 1 ? 0 : Math.floor(r / L);
    for (let h = 0; h < H; h++) {
      const qo = (r * H + h) * hd, ko = (kb * H + h) * S * hd;
      let max = -Infinity;
      for (let j = 0; j < n; j++) { const s = dot(Q, qo, K, ko + j * hd); p[j] = s; if (s > max) max = s; }
      const self = Ks ? dot(Q, qo, Ks, qo) : -Infinity;
      if (self > max) max = self;
      let z = 0;
      for (let j = 0; j < n; j++) { const e = Math.exp(p[j] - max); p[j] = e; z += e; }
      const ws = Ks ? Math.exp(self - max) : 0;
      z += ws;
      const inv = 1 / z;
      for (let d = 0; d < hd; d += 4) {
        let a0 = 0, a1 = 0, a2 = 0, a3 = 0;
        for (let j = 0, vj = ko + d; j < n; j++, vj += hd) {
          const w = p[j];
          a0 += w * V[vj];
          a1 += w * V[vj + 1];
          a2 += w * V[vj + 2];
          a3 += w * V[vj + 3];
        }
        if (Vs) { a0 += ws * Vs[qo + d]; a1 += ws * Vs[qo + d + 1]; a2 += ws * Vs[qo + d + 2]; a3 += ws * Vs[qo + d + 3]; }
        O[qo + d] = a0 * inv;
        O[qo + d + 1] = a1 * inv;
        O[qo + d + 2] = a2 * inv;
        O[qo + d + 3] = a3 * inv;
      }
    }
  }
}

/** Rows of queries R (L per cached sequence), cache batch Bk, heads, slots, head width; checked. */
function shapes(kernel: string, q: tf.TensorInfo, k: tf.TensorInfo, attrs: AttentionAttrs) {
  const [Bk, H, S, hd] = k.shape;
  if (hd % 4 !== 0) throw new Error(`${kernel}: head width ${hd} is not a multiple of 4`);
  const R = tf.util.sizeFromShape(q.shape) / (H * hd);
  if (!Number.isInteger(R) || R % attrs.L !== 0 || (Bk !== 1 && Bk * attrs.L !== R)) {
    throw new Error(`${kernel}: q [${q.shape}] with ${attrs.L} queries per sequence does not match cache [${k.shape}]`);
  }
  if (!(attrs.n >= 1 && attrs.n <= S)) throw new Error(`${kernel}: n = ${attrs.n} outside 1..${S}`);
  return { R, Bk, H, S, hd };
}

/** A forward-only kernel on local memory: inputs as float32 views, one float32 output filled by `run`. */
interface LocalKernel {
  name: string;
  outShape(inputs: tf.TensorInfo[], attrs: Record<string, number>): number[];
  run(ins: Float32Array[], out: Float32Array, inputs: tf.TensorInfo[], attrs: Record<string, number>): void;
}

function registerLocal(k: LocalKernel, inputNames: string[]): void {
  const infos = (inputs: tf.NamedTensorInfoMap) => inputNames.map((n) => inputs[n] as tf.TensorInfo);
  tf.registerKernel({
    kernelName: k.name, backendName: 'wasm',
    kernelFunc: ({ inputs, backend, attrs }) => {
      const be = backend as unknown as WasmBackend;
      const ins = infos(inputs), a = attrs as unknown as Record<string, number>;
      const out = be.makeOutput(k.outShape(ins, a), 'float32');
      // Views after the allocation: it may grow (and detach) the heap.
      k.run(ins.map((t) => heapF32(be, t)), heapF32(be, out), ins, a);
      return out;
    },
  });
  tf.registerKernel({
    kernelName: k.name, backendName: 'cpu',
    kernelFunc: ({ inputs, backend, attrs }) => {
      const be = backend as unknown as CpuBackend;
      const ins = infos(inputs), a = attrs as unknown as Record<string, number>;
      const shape = k.outShape(ins, a);
      const o = new Float32Array(tf.util.sizeFromShape(shape));
      k.run(ins.map((t) => cpuF32(be, t)), o, ins, a);
      return be.makeTensorInfo(shape, 'float32', o);
    },
  });
}

export const DECODE_RMSNORM = 'OrderHeadRMSNorm';
export const DECODE_ROPE = 'OrderHeadRope';

/** x [N, d] * rsqrt(mean(x², -1) + eps) * gain [d]. */
function rmsNormRows(ins: Float32Array[], out: Float32Array, inputs: tf.TensorInfo[], attrs: Record<string, number>): void {
  const [X, G] = ins;
  const d = inputs[1].shape[0], N = X.length / d, eps = attrs.eps;
  for (let r = 0; r < N; r++) {
    const o = r * d;
    let s0 = 0, s1 = 0;
    for (let c = 0; c < d; c += 2) { const a = X[o + c], b = X[o + c + 1]; s0 += a * a; s1 += b * b; }
    const inv = 1 / Math.sqrt((s0 + s1) / d + eps);
    for (let c = 0; c < d; c++) out[o + c] = X[o + c] * inv * G[c];
  }
}

/** 2D rotary on rows x [N, H·hd] with per-row tables cos/sin [N, hd]: pairs (2i, 2i+1) -> (x₂ᵢ·c − x₂ᵢ₊₁·s, x₂ᵢ₊₁·c + x₂ᵢ·s). */
function ropeRows(ins: Float32Array[], out: Float32Array, inputs: tf.TensorInfo[]): void {
  const [X, C, S] = ins;
  const hd = inputs[1].shape[1], N = inputs[1].shape[0], H = X.length / (N * hd);
  for (let r = 0; r < N; r++) {
    const t = r * hd;
    for (let h = 0; h < H; h++) {
      const o = (r * H + h) * hd;
      for (let i = 0; i < hd; i += 2) {
        const a = X[o + i], b = X[o + i + 1];
        out[o + i] = a * C[t + i] - b * S[t + i];
        out[o + i + 1] = b * C[t + i + 1] + a * S[t + i + 1];
      }
    }
  }
}

let registered = false;
let simdEnabled = true;

/** Use (default) or bypass the SIMD loops on wasm (tests compare both). */
export function setDecodeSimd(on: boolean): void {
  simdEnabled = on;
}

/** Whether the wasm decode attention runs the SIMD loops here. */
export function decodeSimdAvailable(): boolean {
  const be = tf.backend() as unknown as WasmBackend;
  return tf.getBackend() === 'wasm' && simdRows(wasmHeap(be), 4) !== null;
}

/** Register the decode kernels for wasm and cpu (idempotent). */
export function registerDecodeKernels(): void {
  if (registered) return;
  registered = true;
  registerLocal({
    name: DECODE_ATTENTION,
    outShape: ([q, k]) => [tf.util.sizeFromShape(q.shape) / (k.shape[1] * k.shape[3]), k.shape[1], k.shape[3]],
    run: ([Q, K, V], O, [q, k], a) => {
      const { R, Bk, H, S, hd } = shapes(DECODE_ATTENTION, q, k, { ...a, L: 1 } as AttentionAttrs);
      attendOne(Q, K, V, O, R, 1, Bk, H, S, hd, a.n, a.scale);
    },
  }, ['q', 'k', 'v']);
  registerLocal({
    name: QUERY_ATTENTION,
    outShape: ([q]) => q.shape,
    run: ([Q, K, V, Ks, Vs], O, [q, k], a) => {
      const { R, Bk, H, S, hd } = shapes(QUERY_ATTENTION, q, k, a as unknown as AttentionAttrs);
      attendOne(Q, K, V, O, R, a.L, Bk, H, S, hd, a.n, a.scale, Ks, Vs);
    },
  }, ['q', 'k', 'v', 'kSelf', 'vSelf']);
  // On wasm, the two inner loops in SIMD on the heap itself (wasm-simd.ts) when the engine has it.
  for (const name of [DECODE_ATTENTION, QUERY_ATTENTION]) {
    const jsWasm = tf.getKernel(name, 'wasm')!.kernelFunc;
    tf.unregisterKernel(name, 'wasm');
    tf.registerKernel({
      kernelName: name, backendName: 'wasm',
      kernelFunc: (args) => {
        const be = args.backend as unknown as WasmBackend;
        const { q, k, v, kSelf, vSelf } = args.inputs as Record<string, tf.TensorInfo>;
        const a = { L: 1, ...args.attrs } as unknown as AttentionAttrs;
        const { R, Bk, H, S, hd } = shapes(name, q, k, a);
        const simd = simdEnabled ? simdRows(wasmHeap(be), hd) : null;
        if (!simd) return jsWasm(args);
        const out = be.makeOutput([R, H, hd], 'float32');
        const scratch = be.makeOutput([a.n], 'float32');
        const at = (t: tf.TensorInfo) => be.dataIdMap.get(t.dataId).memoryOffset;
        const qo = at(q), ko = at(k), vo = at(v), oo = at(out), so = at(scratch);
        // Views after the allocations, none below: they stay valid.
        const p = heapF32(be, scratch), O = heapF32(be, out);
        const self = kSelf ? { Q: heapF32(be, q), K: heapF32(be, kSelf), V: heapF32(be, vSelf) } : null;
        const n = a.n, rowBytes = hd * 4;
        for (let r = 0; r < R; r++) {
          const kb = Bk === 1 ? 0 : Math.floor(r / a.L);
          for (let h = 0; h < H; h++) {
            const row = r * H + h, kv = (kb * H + h) * S * rowBytes;
            simd.scores(qo + row * rowBytes, ko + kv, so, n, hd, a.scale);
            let own = -Infinity; // the query's own slot (query attention)
            if (self) { own = 0; for (let d = row * hd; d < (row + 1) * hd; d++) own += self.Q[d] * self.K[d]; own *= a.scale; }
            let max = own;
            for (let j = 0; j < n; j++) if (p[j] > max) max = p[j];
            let z = 0;
            for (let j = 0; j < n; j++) { const e = Math.exp(p[j] - max); p[j] = e; z += e; }
            const w = self ? Math.exp(own - max) : 0, inv = 1 / (z + w);
            for (let j = 0; j < n; j++) p[j] *= inv;
            simd.wsum(so, vo + kv, oo + row * rowBytes, n, hd);
            if (self) for (let d = row * hd; d < (row + 1) * hd; d++) O[d] += w * inv * self.V[d];
          }
        }
        be.disposeData(scratch.dataId);
        return out;
      },
    });
  }
  registerLocal({ name: DECODE_RMSNORM, outShape: ([x]) => x.shape, run: rmsNormRows }, ['x', 'gain']);
  registerLocal({ name: DECODE_ROPE, outShape: ([x, c]) => [c.shape[0], tf.util.sizeFromShape(x.shape) / (c.shape[0] * c.shape[1]), c.shape[1]], run: ropeRows }, ['x', 'cos', 'sin']);
}

/**
 * Whether the active backend runs the decode kernels, and we are outside a
 * gradient tape (they have no gradients).
 */
export function decodeKernelsAvailable(): boolean {
  if (!hasLocalMemory() || tf.engine().state.gradientDepth > 0) return false;
  registerDecodeKernels();
  return true;
}

/**
 * One query per (sample, head) against the first `n` slots of a cache:
 * q [B, H, hd] (any shape with B·H·hd values, in that order), k and v
 * [B or 1, H, S, hd] (batch 1: a prefix shared by every sample) -> [B, H, hd].
 */
export function decodeAttention(q: tf.Tensor, k: tf.Tensor4D, v: tf.Tensor4D, n: number, scale: number): tf.Tensor3D {
  registerDecodeKernels();
  return tf.engine().runKernel(DECODE_ATTENTION, { q, k, v }, { n, scale } as unknown as tf.NamedAttrMap) as tf.Tensor3D;
}

/**
 * L independent one-step queries per sequence over a cached prefix: query r
 * [B·L, H, hd] attends to the first `n` slots of its sequence's cache
 * (row r / L of k, v [B or 1, H, S, hd]) and to its own key and value
 * (kSelf, vSelf [B·L, H, hd]), not to the other queries -> [B·L, H, hd].
 * The planner's features ask every unseen block this way (lib/planner/features.ts).
 */
export function queryAttention(q: tf.Tensor, k: tf.Tensor4D, v: tf.Tensor4D, kSelf: tf.Tensor, vSelf: tf.Tensor, n: number, L: number, scale: number): tf.Tensor3D {
  registerDecodeKernels();
  return tf.engine().runKernel(QUERY_ATTENTION, { q, k, v, kSelf, vSelf }, { n, L, scale } as unknown as tf.NamedAttrMap) as tf.Tensor3D;
}

/** RMSNorm of rows x [N, d] with gain [d], as one kernel (forward only). */
export function fusedRmsNorm(x: tf.Tensor2D, gain: tf.Tensor, eps: number): tf.Tensor2D {
  registerDecodeKernels();
  return tf.engine().runKernel(DECODE_RMSNORM, { x, gain }, { eps } as unknown as tf.NamedAttrMap) as tf.Tensor2D;
}

/** 2D rotary of rows x [N, H·hd] by per-row tables cos/sin [N, hd] -> [N, H, hd], as one kernel (forward only). */
export function fusedRope(x: tf.Tensor2D, cos: tf.Tensor, sin: tf.Tensor): tf.Tensor3D {
  registerDecodeKernels();
  return tf.engine().runKernel(DECODE_ROPE, { x, cos, sin }, {}) as tf.Tensor3D;
}

/**
 * Copy `update` (rows [B, L, H, hd], the layout of a projection before it is
 * split into heads) into `buffer` [B, H, capacity, hd] at slots [at, at+L),
 * in place. The buffer must be a tensor no other tensor shares storage with
 * (not a reshape of another): every holder sees the write. Returns false
 * (nothing written) when the backend's memory is not local.
 */
export function writeSlotsInPlace(buffer: tf.Tensor4D, update: tf.Tensor, at: number): boolean {
  const [B, H, cap, hd] = buffer.shape;
  const L = update.size / (B * H * hd);
  if (!Number.isInteger(L) || at < 0 || at + L > cap) throw new Error(`writeSlotsInPlace: [${update.shape}] at ${at} does not fit [${buffer.shape}]`);
  const src = localF32(update);
  if (!src) return false;
  const dst = localF32(buffer)!; // after src: no allocation between the two views
  for (let b = 0; b < B; b++) {
    for (let l = 0; l < L; l++) {
      for (let h = 0; h < H; h++) {
        const s = ((b * L + l) * H + h) * hd, d = ((b * H + h) * cap + at + l) * hd;
        for (let i = 0; i < hd; i++) dst[d + i] = src[s + i]; // short rows: a loop beats subarray + set (no allocation)
      }
    }
  }
  return true;
}
