/**
 * The VQ tokenizer (curriculum Stage 0): config, model, training, token cache.
 *
 * Curated: what the notebooks call (oh.tokenizer.*) and what other layers import
 * through this index. Everything else is imported by its file path.
 */
export { benchmarkTokenizerLayers } from './bench';
export { loadTokenCache, tokenizeDataset } from './cache';
export { tokenGrid, TOKENIZER_CONFIG_DOCS, TokenizerConfig, tokenizerConfig } from './config';
export { tokenizerFindings } from './findings';
export { vqLoss } from './loss';
export { TokenizerMetrics } from './metrics';
export { imagesToPatches, patchesToImages } from './patches';
export { loadTokenizer, restartDeadCodes, trainTokenizer } from './train';
export { VqTokenizer } from './vq-tokenizer';
export { decodeCodes, encodePatches, normalisedCodebook, quantise } from './vq';
