/**
 * The sample-quality metrics of METHOD.md section 7, and the caveat every one
 * of their numbers carries. The metrics, one file each, all on plain
 * Float32Arrays with no tfjs, so the numbers can be recomputed from stored
 * features anywhere:
 * - FID and sFID: frechet.ts (feature statistics, Fréchet distance), on the
 *   symmetric eigensolver of eigen.ts;
 * - Inception Score: inception-score.ts;
 * - k-NN precision/recall: precision-recall.ts;
 * - bootstrap intervals: bootstrap.ts.
 * Their common input layout is described (and checked) in feature-rows.ts.
 *
 * The features come from OrderHead's own classifier (feature-net.ts), not
 * from ImageNet Inception-v3: every figure or table that shows these numbers
 * must carry FEATURE_NET_CAVEAT.
 */

/**
 * The sentence to show next to every FID / sFID / IS / precision / recall
 * number (METHOD.md section 7): the feature network is a small classifier
 * trained on the project's own dataset, so the figures compare settings of
 * this project with each other and cannot be compared with ImageNet papers.
 */
export const FEATURE_NET_CAVEAT =
  'FID, sFID, IS, precision and recall here are measured with OrderHead\'s own small classifier trained on this dataset ' +
  '(lib/eval/feature-net.ts), not with ImageNet Inception-v3: they compare settings within this project and are not ' +
  'comparable with numbers from ImageNet papers.';
