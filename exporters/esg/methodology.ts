import type { EsgMethodology } from './esg-report.js';

/** The method, as the report states it to an auditor. Kept beside the code that implements it. */
export function methodology(dataSource: 'ledger' | 'prometheus' | 'merge'): EsgMethodology {
  const source =
    dataSource === 'ledger'
      ? 'Figures come from the node ledger (SQLite) hourly rollups written at settlement.'
      : dataSource === 'prometheus'
        ? 'Figures come from the agents\' Prometheus counters, summed per hour with increase() through the Prometheus HTTP API ' +
          '(a series first seen within an hour adds its first value, which increase() cannot see, when that value is new: its agent started its counters from zero ' +
          'less than two hours before (tokenwatt_counters_start_timestamp_seconds), was scraped in the hour before, or the series appeared after the agent\'s first scrape in the hour; ' +
          'never the totals an agent restarted on its ledger goes on from; agents without that gauge are inferred new when their first GPU energy reading is no more than the hour\'s increase); they match the ledger within ' +
          'Prometheus sampling (about one scrape interval at the edges of each series). A request\'s attributed energy counts in the hour its last period ' +
          'was settled (when the counter rises), so each hour\'s facility energy is shared among the requests settled in it. Tokens and requests are broken down by ' +
          'model and tier only; sample-covered GPU hours and coverage come from tokenwatt_gpu_covered_seconds_total (null when an agent lacks it), gaps and counter resets are not exported as metrics and are null; tasks count ' +
          'when the agent closes them (no request for at least a minute), once each: a task that continues after it closed adds its ' +
          'further energy and waste under the tier and outcome it had then, where the ledger counts every task as ' +
          'it settles, with its final figures.'
        : 'Fleet report: the sum of node reports (each verified by its content hash; a report given twice is counted once). Ratios are recomputed from the summed figures. Tasks are counted per node: a task that ran on several nodes counts on each (the quality notes say so when more than one node has tasks).';
  return {
    summary:
      'GPU energy is measured per GPU (energy counters, else integrated power) and attributed to requests (static share by time, dynamic share by work); ' +
      'idle and unattributed energy are reported, never hidden. Facility energy = (GPU + host) x PUE. Emissions are reported location-based and market-based ' +
      '(GHG Protocol Scope 2 dual reporting), with embodied emissions per SCI (ISO/IEC 21031). ' + source,
    steps: [
      'Energy: measured GPU energy per GPU-hour = idle + static + dynamic + unattributed (conservation checked at settlement). Host energy is RAPL where available, else a configured overhead flagged as estimated.',
      'Facility energy: (GPU + host energy) x PUE of the site (configured, or the documented default).',
      'Location-based emissions: facility energy of each hour x the grid intensity of that hour (shipped region table, configured constant, or hourly intensity file).',
      'Market-based emissions: contractual instruments cover their share at their own rate (often 0); the remainder uses the supplier-specific rate, else the residual mix, else (disclosed) the location-based grid average.',
      'Embodied emissions (SCI): M = TE x (TiR / EL) x RS per GPU and per host, with TiR the time the hardware was observed in the period: a GPU\'s time covered by power samples, a host\'s the most covered of its GPUs in each hour.',
      'SCI = (E x I + M) / R with E x I location-based; R = output (completion) tokens, or successful tasks. Offsets and market instruments never reduce SCI.',
      'Breakdowns: attributed (marginal) energy per label, from the hourly usage rows, which book a request\'s energy in the hours it was drawn, its tokens with it (each hour the share of its tokens that it took of its attributed energy, in whole tokens) and the request itself in the hour it ended. Fully loaded energy: the facility energy of each node-hour ((GPU + host) x PUE) is shared among the usage rows booked in that hour in proportion to their attributed energy, at that hour\'s grid intensities. ' +
        'A node-hour whose usage rows hold no attributed energy is unallocated: each label dimension shows it as its "(unallocated)" row, so the rows of every dimension add up to the totals. Usage in a node-hour without measured energy gets no fully loaded energy (the quality notes count such hours).',
      'Tasks: see tasks.definition. Waste share = energy of failed, cancelled and retried attempts / all task energy.',
      'Data quality: sample coverage = sample-covered GPU hours / (GPUs x hours in the period); estimated energy comes from gaps, counter resets and missing readings; late records arrived after their period settled and are counted, never dropped.',
      'Simulated energy (demo mode, simulated power source) is flagged per row; any simulated share marks the whole report as simulated.',
      'Figures are rounded to 10 significant digits. content_sha256 is SHA-256 over the canonical JSON (sorted keys, no whitespace) of the report without generated_at and content_sha256.',
    ],
    standards: [
      'GHG Protocol Scope 2 Guidance (2015): location-based and market-based dual reporting, quality criteria for contractual instruments',
      'ISO/IEC 21031:2024 Software Carbon Intensity (SCI) specification (Green Software Foundation)',
      'Green Software Foundation Impact Framework manifest (export --format impact)',
    ],
  };
}
