import type { PowerSample } from '../../model/power-sample.js';
import type { PowerSourceError } from '../../collectors/power-source.js';

/** Gathers what a PowerSource emits and waits (bounded) for conditions on it. */
export class SampleCollector {
  readonly samples: PowerSample[] = [];
  readonly errors: PowerSourceError[] = [];
  readonly batches: (readonly PowerSample[])[] = [];

  readonly onSamples = (batch: readonly PowerSample[]): void => {
    this.batches.push(batch);
    this.samples.push(...batch);
  };

  readonly onError = (error: PowerSourceError): void => {
    this.errors.push(error);
  };

  of(uuid: string): PowerSample[] {
    return this.samples.filter((s) => s.gpuUuid === uuid);
  }

  errorsOf(reason: string): PowerSourceError[] {
    return this.errors.filter((e) => e.reason === reason);
  }

  /** Polls `condition` every 10 ms; rejects naming `what` after `timeoutMs`. */
  async waitFor(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!condition()) {
      if (Date.now() > deadline) {
        throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; got ${this.samples.length} samples, errors: ${JSON.stringify(this.errors)}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
