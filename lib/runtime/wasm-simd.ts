/**
 * Two WebAssembly SIMD loops that run directly on the tfjs wasm backend's
 * heap (they import its `WebAssembly.Memory`), for one-query attention
 * (decode-kernels.ts): the row of scores q·K[j] and the weighted sum Σ p[j]·V[j].
 * Plain JavaScript does these at ~1.6 GFLOP/s; four lanes per instruction do
 * several times that, and attention is the largest cost of KV-cache decoding
 * after the dense layers.
 *
 * The module is assembled here byte by byte (no toolchain at build time):
 *
 *   (func $scores (param $q i32) (param $k i32) (param $out i32) (param $n i32) (param $hd i32) (param $scale f32)
 *     ;; out[j] = scale · Σ_d q[d]·k[j·hd + d], j < n       (addresses in bytes, f32 data, hd % 4 == 0)
 *   (func $wsum (param $p i32) (param $v i32) (param $out i32) (param $n i32) (param $hd i32)
 *     ;; out[d] = Σ_j p[j]·v[j·hd + d], d < hd
 *
 * Each comes in three unrolls (1, 2 or 4 independent accumulators, for
 * head widths divisible by 4, 8 or 16): one accumulator is one chain of
 * dependent adds, which leaves most of the SIMD unit idle. Accumulates in
 * float32 lanes (as XNNPACK does); checked against the JS loops and the op
 * path in tests/unit/backbone/decode.test.ts.
 */

// Opcodes (WebAssembly core + SIMD).
const I32 = 0x7f, F32 = 0x7d, V128 = 0x7b;
const BLOCK = 0x02, LOOP = 0x03, END = 0x0b, BR = 0x0c, BR_IF = 0x0d, VOID = 0x40;
const LOCAL_GET = 0x20, LOCAL_SET = 0x21;
const I32_CONST = 0x41, I32_GE_S = 0x4e, I32_ADD = 0x6a, I32_SHL = 0x74;
const F32_LOAD = 0x2a, F32_STORE = 0x38, F32_ADD = 0x92, F32_MUL = 0x94;
const SIMD = 0xfd;
const V128_LOAD = [SIMD, 0x00], V128_STORE = [SIMD, 0x0b], V128_CONST = [SIMD, 0x0c];
const F32X4_SPLAT = [SIMD, 0x13], F32X4_EXTRACT = [SIMD, 0x1f], F32X4_ADD = [SIMD, 0xe4, 0x01], F32X4_MUL = [SIMD, 0xe6, 0x01];

const uleb = (n: number): number[] => {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return out;
};
const vec = (items: number[][]): number[] => [...uleb(items.length), ...items.flat()];
const str = (s: string): number[] => [...uleb(s.length), ...Array.from(Buffer.from(s, 'utf8'))];
const section = (id: number, body: number[]): number[] => [id, ...uleb(body.length), ...body];
const get = (i: number) => [LOCAL_GET, i], set = (i: number) => [LOCAL_SET, i];
const i32c = (v: number) => [I32_CONST, ...uleb(v)]; // small non-negative constants only
const zero = [...V128_CONST, ...new Array(16).fill(0)];
/** addr = base + (index << 2) */
const addr = (base: number, index: number) => [...get(base), ...get(index), ...i32c(2), I32_SHL, I32_ADD];
/** local += by */
const inc = (local: number, by: number[]) => [...get(local), ...by, I32_ADD, ...set(local)];
/** block { loop { if (a >= b) break; body; br loop } } */
const forLoop = (a: number, b: number, body: number[]) =>
  [BLOCK, VOID, LOOP, VOID, ...get(a), ...get(b), I32_GE_S, BR_IF, 1, ...body, BR, 0, END, END];

/** Load a v128 at local `base` + (local `index` << 2) + `offset` bytes. */
const loadAt = (base: number, index: number, offset: number) => [...addr(base, index), ...V128_LOAD, 0, ...uleb(offset)];

/**
 * scores with U accumulators (U independent add chains over 4·U-float chunks of a row; hd % (4·U) == 0):
 * params q=0 k=1 out=2 n=3 hd=4 scale=5; locals j=6 d=7 (i32), acc_u=8+u (v128)
 */
function scoresBody(U: number): number[] {
  const acc = (u: number) => 8 + u;
  const sum = (u: number): number[] => (u === 0 ? get(acc(0)) : [...sum(u - 1), ...get(acc(u)), ...F32X4_ADD]);
  return [
    ...vec([[2, I32], [U, V128]]),
    ...i32c(0), ...set(6),
    ...forLoop(6, 3, [
      ...Array.from({ length: U }, (_, u) => [...zero, ...set(acc(u))]).flat(),
      ...i32c(0), ...set(7),
      ...forLoop(7, 4, [
        ...Array.from({ length: U }, (_, u) => [...get(acc(u)), ...loadAt(0, 7, 16 * u), ...loadAt(1, 7, 16 * u), ...F32X4_MUL, ...F32X4_ADD, ...set(acc(u))]).flat(),
        ...inc(7, i32c(4 * U)),
      ]),
      ...sum(U - 1), ...set(acc(0)),
      ...addr(2, 6),
      ...get(8), ...F32X4_EXTRACT, 0, ...get(8), ...F32X4_EXTRACT, 1, F32_ADD,
      ...get(8), ...F32X4_EXTRACT, 2, ...get(8), ...F32X4_EXTRACT, 3, F32_ADD,
      F32_ADD, ...get(5), F32_MUL,
      F32_STORE, 2, 0,
      ...inc(1, [...get(4), ...i32c(2), I32_SHL]), // k += hd·4
      ...inc(6, i32c(1)),
    ]),
    END,
  ];
}

/**
 * wsum with U accumulators (U output chunks of 4 floats at once; hd % (4·U) == 0):
 * params p=0 v=1 out=2 n=3 hd=4; locals d=5 j=6 vp=7 stride=8 (i32), pv=9, acc_u=10+u (v128)
 */
function wsumBody(U: number): number[] {
  const acc = (u: number) => 10 + u;
  return [
    ...vec([[4, I32], [1 + U, V128]]),
    ...get(4), ...i32c(2), I32_SHL, ...set(8),
    ...i32c(0), ...set(5),
    ...forLoop(5, 4, [
      ...Array.from({ length: U }, (_, u) => [...zero, ...set(acc(u))]).flat(),
      ...addr(1, 5), ...set(7),
      ...i32c(0), ...set(6),
      ...forLoop(6, 3, [
        ...addr(0, 6), F32_LOAD, 2, 0, ...F32X4_SPLAT, ...set(9),
        ...Array.from({ length: U }, (_, u) => [...get(acc(u)), ...get(9), ...get(7), ...V128_LOAD, 0, ...uleb(16 * u), ...F32X4_MUL, ...F32X4_ADD, ...set(acc(u))]).flat(),
        ...inc(7, get(8)),
        ...inc(6, i32c(1)),
      ]),
      ...Array.from({ length: U }, (_, u) => [...addr(2, 5), ...get(acc(u)), ...V128_STORE, 0, ...uleb(16 * u)]).flat(),
      ...inc(5, i32c(4 * U)),
    ]),
    END,
  ];
}

/** Unroll factors compiled: each function pair `scores<U>` / `wsum<U>` needs hd % (4·U) == 0. */
const UNROLLS = [1, 2, 4] as const;

/**
 * The module, importing the engine's heap: a plain memory (flags 0x00, min 1
 * page) or, for the threaded engine, a shared one (flags 0x03: shared, with a
 * maximum, which must be at least the heap's: 65536 pages = 4 GiB).
 */
function moduleBytes(shared: boolean): Uint8Array {
  const bodies = UNROLLS.flatMap((U) => [scoresBody(U), wsumBody(U)]);
  const bytes = [
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, vec([[0x60, ...vec([[I32], [I32], [I32], [I32], [I32], [F32]]), 0x00], [0x60, ...vec([[I32], [I32], [I32], [I32], [I32]]), 0x00]])),
    ...section(2, vec([[...str('env'), ...str('memory'), 0x02, ...(shared ? [0x03, 0x01, ...uleb(65536)] : [0x00, 0x01])]])),
    ...section(3, vec(UNROLLS.flatMap(() => [[0], [1]]))),
    ...section(7, vec(UNROLLS.flatMap((U, i) => [[...str(`scores${U}`), 0x00, 2 * i], [...str(`wsum${U}`), 0x00, 2 * i + 1]]))),
    ...section(10, vec(bodies.map((b) => [...uleb(b.length), ...b]))),
  ];
  return Uint8Array.from(bytes);
}

type ScoresFn = (q: number, k: number, out: number, n: number, hd: number, scale: number) => void;
type WsumFn = (p: number, v: number, out: number, n: number, hd: number) => void;

export interface SimdRows {
  /** out[j] = scale · q·k[j], j < n (byte addresses). */
  scores: ScoresFn;
  /** out = Σ_j p[j]·v[j], j < n. */
  wsum: WsumFn;
}

type Exports = Record<string, ScoresFn | WsumFn>;

const compiled = new Map<boolean, WebAssembly.Module | null>();
const instances = new WeakMap<WebAssembly.Memory, Exports>();

/**
 * The SIMD loops bound to `memory`, for rows of `hd` floats (the widest
 * unroll that divides hd/4), or null when this engine lacks wasm SIMD.
 */
export function simdRows(memory: WebAssembly.Memory | undefined, hd: number): SimdRows | null {
  if (!memory || hd % 4 !== 0) return null;
  const shared = typeof SharedArrayBuffer !== 'undefined' && memory.buffer instanceof SharedArrayBuffer;
  if (!compiled.has(shared)) {
    const bytes = moduleBytes(shared);
    compiled.set(shared, WebAssembly.validate(bytes) ? new WebAssembly.Module(bytes) : null);
  }
  const mod = compiled.get(shared);
  if (!mod) return null;
  let inst = instances.get(memory);
  if (!inst) {
    inst = new WebAssembly.Instance(mod, { env: { memory } }).exports as unknown as Exports;
    instances.set(memory, inst);
  }
  const U = [...UNROLLS].reverse().find((u) => hd % (4 * u) === 0)!;
  return { scores: inst[`scores${U}`] as ScoresFn, wsum: inst[`wsum${U}`] as WsumFn };
}
