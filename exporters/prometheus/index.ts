/** tokenwatt's Prometheus exporter: the metrics, their catalog, and the label cardinality guard. */
export { SEED_JOULES_MARGIN, TokenwattMetrics, type FinalizedRequestMetrics, type FinalizedTaskMetrics, type MetricsBody, type MetricsSeed, type PowerSourceInfo, type TokenwattMetricsOptions } from './tokenwatt-metrics.js';
export { LabelCapper, ABSENT_LABEL_VALUE, OTHER_LABEL_VALUE } from './label-capper.js';
export { METRIC_CATALOG, type MetricKey, type MetricSpec, type MetricType } from './metric-catalog.js';
export { energyBuckets, REQUEST_ENERGY_BUCKETS, TASK_ENERGY_BUCKETS } from './energy-buckets.js';
export { userLabelNameProblems, RESERVED_LABEL_NAMES, MAX_USER_LABELS, type LabelNameProblem } from './label-names.js';
export { IncrementalExposition, ExpositionSnapshot, formatValue, type IncrementalExpositionOptions } from './incremental-exposition.js';
export { acceptsGzip, crc32Combine, finishGzipMember, GZIP_HEADER } from './gzip-member.js';
export { serveMetrics, type ScrapeSource } from './serve-metrics.js';
