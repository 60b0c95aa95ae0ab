/**
 * Node flags the agent process is started with: by the `tokenwatt` bin's shebang, `npm start`, the
 * container's ENTRYPOINT and the agent-overhead benchmark (a test checks that all of them agree).
 *
 * `--max-semi-space-size=4` caps V8's young generation at 4 MB per semi-space. Without it, ingest
 * at 1,000 records/s grows the young generation to its 16 MB default maximum (32 MB of RSS for two
 * semi-spaces) although what the agent allocates per record is short-lived. Measured on the agent
 * with 8 simulated GPUs at 1,000 records/s: about 24 MB less RSS for the same CPU (BENCHMARKS.md).
 * It cannot be set from inside the process: V8 sizes the young generation when the heap is created.
 */
export const AGENT_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=4'];
