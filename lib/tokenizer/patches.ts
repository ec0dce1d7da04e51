/**
 * The tokenizer's patch geometry, on the host: images cut into patches of
 * P x P pixels on a G x G grid (one token per patch) and put back, and the
 * neighbourhood mask of the cross-patch mixing. Pure index arithmetic, no
 * tensors, so the graph never needs a strided slice or a rank-5 transpose.
 */
import { ensure } from '../runtime/errors';

/**
 * Reorder images [N, S, S] into patches [N, T, P*P] (token t = gy * G + gx, pixel
 * p = py * P + px inside the patch). A pure permutation, done on the host so the
 * graph never needs a strided slice or a rank-5 transpose.
 */
export function imagesToPatches(images: Float32Array, n: number, imageSize: number, patchSize: number, out?: Float32Array): Float32Array {
  const S = imageSize, P = patchSize, G = S / P;
  ensure(images.length >= n * S * S, `holds ${images.length} values, fewer than ${n} images of ${S}x${S}`, 'imagesToPatches(images)', `pass N*${S}*${S} pixels`);
  const dst = out ?? new Float32Array(n * S * S);
  let o = 0;
  for (let i = 0; i < n; i++) {
    const base = i * S * S;
    for (let gy = 0; gy < G; gy++) {
      for (let gx = 0; gx < G; gx++) {
        for (let py = 0; py < P; py++) {
          const row = base + (gy * P + py) * S + gx * P;
          for (let px = 0; px < P; px++) dst[o++] = images[row + px];
        }
      }
    }
  }
  return dst;
}

/** Inverse of `imagesToPatches`: patches [N, T, P*P] back to images [N, S, S]. */
export function patchesToImages(patches: Float32Array, n: number, imageSize: number, patchSize: number): Float32Array {
  const S = imageSize, P = patchSize, G = S / P;
  const dst = new Float32Array(n * S * S);
  let o = 0;
  for (let i = 0; i < n; i++) {
    const base = i * S * S;
    for (let gy = 0; gy < G; gy++) {
      for (let gx = 0; gx < G; gx++) {
        for (let py = 0; py < P; py++) {
          const row = base + (gy * P + py) * S + gx * P;
          for (let px = 0; px < P; px++) dst[row + px] = patches[o++];
        }
      }
    }
  }
  return dst;
}

/** 0/1 matrix [T, T]: 1 where two grid cells are within `radius` (Chebyshev distance). */
export function neighbourhoodMask(grid: number, radius: number): Float32Array {
  const T = grid * grid;
  const m = new Float32Array(T * T);
  for (let a = 0; a < T; a++) {
    for (let b = 0; b < T; b++) {
      const dy = Math.abs(Math.floor(a / grid) - Math.floor(b / grid));
      const dx = Math.abs((a % grid) - (b % grid));
      if (Math.max(dy, dx) <= radius) m[a * T + b] = 1;
    }
  }
  return m;
}
