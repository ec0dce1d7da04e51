/** OrderHead: backbone features, the planner with latent reasoning, its training (Stages 3-4), its policy. */
export * from './features';
export * from './orderhead';
export * from './train';
export * from './policy';
export * from './metrics';
export * from './stages';
export * from './figures';
export * from './joint';
export * from './budget';
export * from './findings';
