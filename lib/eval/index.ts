/**
 * The evaluation suite (METHOD.md section 7): the feature network trained on
 * the project's own data, FID / sFID / IS / precision-recall / bootstrap
 * intervals on its features, and progressive recognizability curves.
 * Every number from here is shown with FEATURE_NET_CAVEAT.
 */
export * from './metrics';
export * from './feature-net';
export * from './recognizability';
