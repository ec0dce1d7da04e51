/**
 * The evaluation suite (METHOD.md section 7): the feature network trained on
 * the project's own data, FID / sFID / IS / precision-recall / bootstrap
 * intervals on its features, progressive recognizability curves, the
 * evaluation settings and their per-setting evaluation, the oracle trajectory
 * metrics, and the paper tables and figures.
 * Every feature-net number is shown with FEATURE_NET_CAVEAT.
 */
export * from './metrics';
export * from './class-accuracy';
export * from './eigen';
export * from './frechet';
export * from './inception-score';
export * from './precision-recall';
export * from './bootstrap';
export * from './feature-net-config';
export * from './feature-net-layers';
export * from './feature-net';
export * from './feature-net-train';
export * from './recognizability';
export * from './summary';
export * from './trajectory';
export * from './settings';
export * from './config';
export * from './context';
export * from './results';
export * from './evaluate';
export * from './evaluate-settings';
export * from './cache';
export * from './tables';
export * from './figures';
export * from './findings';
export * from './budgets';
export * from './headline';
// The verdict and finding records sit below the oracle; notebooks reach them (oh.findingsTable, oh.meritOf) through here.
export * from '../stats';
