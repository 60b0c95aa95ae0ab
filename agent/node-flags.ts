/**
 * Node flags the agent process is started with: by the `tokenwatt` bin's shebang, `npm start`, the
 * container's ENTRYPOINT, and `npm run bench` for its in-process and child-process benchmarks (tests
 * check that all of them agree).
 *
 * `--max-semi-space-size=4` caps V8's young generation at 4 MB per semi-space. Without it, ingest
 * at 1,000 records/s grows the young generation to its 16 MB default maximum (32 MB of RSS for two
 * semi-spaces) although what the agent allocates per record is short-lived. Measured on the agent
 * with 8 simulated GPUs at 1,000 records/s: about 24 MB less RSS for the same CPU (BENCHMARKS.md).
 * The cost is in bursts: 1,000-record NDJSON batches ingest about 15% slower (2 MB semi-spaces
 * saved 6 MB more but cost 25% of batch ingest and 0.6% of a core, so 4 it is).
 *
 * `--heap-growing-percent=20` lets the old generation grow by 20% of what survived the last full
 * collection before the next one (V8's default factor goes up to 4x on a fast machine). A
 * settlement briefly promotes its period's requests; with the default, that garbage piled up to
 * 130-160 MB of RSS between full collections at 10 s periods. Measured at the agent's defaults:
 * peak RSS 124 -> 119 MB, CPU 4.2% -> 3.9% (one run each, BENCHMARKS.md); without it, RSS climbed
 * from 119 to 182 MB within a minute before a full collection. Its cost, also measured: more
 * frequent full collections, which show in the p99 of a /metrics scrape at the label cap (15,708
 * series, scraper in its own process): 4-11 ms plain with it, 6-7 ms without, gzip about the same
 * (BENCHMARKS.md). A flat, bounded RSS was judged worth more.
 *
 * `--single-threaded-gc` keeps V8's collections on the main thread: no helper threads marking,
 * scavenging or sweeping beside it. The agent's heap is small (20-40 MB), so a collection costs the
 * main thread little, while waking helper threads costs CPU on every one of them and takes cores
 * from the serving engine on a GPU node. Measured on the 2 vCPU VM of BENCHMARKS.md (eighth round
 * of 2026-11-23): the agent's helper threads fell from about 0.9% of a core to 0.4% at 1,000
 * records/s, the main thread rose by about 0.2%; and the p99 of a /metrics scrape at the label cap
 * fell from 9.1-10.1 ms to 4.7-5.6 ms plain (gzip 7.2-11.7 to 2.9-4.2 ms), two runs each, as the
 * scrape no longer waits for a core the helpers hold.
 *
 * None of them can be set from inside the process: V8 sizes its heap when the heap is created.
 */
export const AGENT_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=4', '--heap-growing-percent=20', '--single-threaded-gc'];
