/**
 * The oracle (METHOD.md sections 3, 4 and 6, curriculum Stage 2): token-wise
 * future losses, the utilities u and u_extrap of every candidate block, the
 * oracle labels (Algorithms 1 and 2), and the oracle dataset built from them.
 */
export * from './weights';
export * from './utility';

export * from './dataset-config';
export * from './layout';
export * from './states';
export * from './manifest';
export * from './build';
export * from './merge';
export * from './dataset';
export * from './dataset-figures';
export * from './analysis';
export * from './label-heatmaps';
export * from './locality';
export * from './agreement';
export * from './own-loss';
export * from './reference-rank';
export * from './findings';
export * from './state-views';
export * from './parallel';
