/**
 * The datasets: idx files, the profile's data (ORDERHEAD_DATA), padding, per-class statistics.
 *
 * Curated: what the notebooks call (oh.data.*) and what other layers import
 * through this index. Everything else is imported by its file path.
 */
export { classMeanImages, datasetStats, loadDataset, padTo } from './dataset';
export { profileDataset } from './profile-data';
