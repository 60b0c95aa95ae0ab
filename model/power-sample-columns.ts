import type { PowerSample } from './power-sample.js';
import { epochMs, joules, watts } from './units.js';

/** Bits of {@link PowerSampleColumns}' `flags` column. */
export const SAMPLE_AVERAGED_KNOWN = 1;
export const SAMPLE_AVERAGED = 2;
export const SAMPLE_SIMULATED = 4;
/** The sample starts a new counter run (PowerSample.counterRunStart). */
export const SAMPLE_COUNTER_RUN_START = 8;

/** A GPU that samples in columns refer to by its position in the list. */
export interface SampleGpu {
  readonly uuid: string;
  readonly index: number;
}

/** The columns of {@link PowerSampleColumns}, all of one length. */
export interface PowerSampleColumnArrays {
  readonly timestampMs: Float64Array;
  /** NaN: no power reading. */
  readonly powerW: Float64Array;
  /** NaN: no counter reading. */
  readonly energyJ: Float64Array;
  /** Position of the sample's GPU in `gpus`. */
  readonly gpu: Uint32Array;
  /** SAMPLE_* bits. */
  readonly flags: Uint8Array;
  readonly gpus: readonly SampleGpu[];
}

/**
 * Power samples held column by column, each read back as a {@link PowerSample} only when asked.
 * A day-long trace of an 8-GPU node at 10 Hz has 6.9 million samples: as objects they took about
 * 230 bytes each, in columns 29. Readers of long traces (analyze, replay) keep these and make
 * objects for the stretch they work on.
 */
export class PowerSampleColumns {
  readonly length: number;

  constructor(private readonly columns: PowerSampleColumnArrays) {
    const n = columns.timestampMs.length;
    for (const [name, column] of [['powerW', columns.powerW], ['energyJ', columns.energyJ], ['gpu', columns.gpu], ['flags', columns.flags]] as const) {
      if (column.length !== n) throw new Error(`PowerSampleColumns: column ${name} has ${column.length} values, timestampMs ${n}`);
    }
    for (let i = 0; i < n; i++) {
      if ((columns.gpu[i] as number) >= columns.gpus.length) throw new Error(`PowerSampleColumns: sample ${i} names GPU ${columns.gpu[i]}, of ${columns.gpus.length}`);
    }
    this.length = n;
  }

  /** The samples of a list, in its order. */
  static of(samples: readonly PowerSample[]): PowerSampleColumns {
    const n = samples.length;
    const timestampMs = new Float64Array(n);
    const powerW = new Float64Array(n);
    const energyJ = new Float64Array(n);
    const gpu = new Uint32Array(n);
    const flags = new Uint8Array(n);
    const gpus: SampleGpu[] = [];
    const positionOf = new Map<string, number>();
    for (let i = 0; i < n; i++) {
      const s = samples[i] as PowerSample;
      // A GPU is its (uuid, index) pair: a list may give one UUID two indices, and each sample keeps its own.
      const key = `${s.gpuUuid}\u0000${s.gpuIndex}`;
      let position = positionOf.get(key);
      if (position === undefined) {
        position = gpus.length;
        gpus.push({ uuid: s.gpuUuid, index: s.gpuIndex });
        positionOf.set(key, position);
      }
      timestampMs[i] = s.timestampMs;
      powerW[i] = s.powerW ?? Number.NaN;
      energyJ[i] = s.energyJ ?? Number.NaN;
      gpu[i] = position;
      flags[i] = (s.powerAveraged !== undefined ? SAMPLE_AVERAGED_KNOWN : 0) | (s.powerAveraged === true ? SAMPLE_AVERAGED : 0) | (s.simulated === true ? SAMPLE_SIMULATED : 0)
        | (s.counterRunStart === true ? SAMPLE_COUNTER_RUN_START : 0);
    }
    return new PowerSampleColumns({ timestampMs, powerW, energyJ, gpu, flags, gpus });
  }

  /** Sample `i` as an object (a new one each call). */
  at(i: number): PowerSample {
    const c = this.columns;
    const gpu = c.gpus[c.gpu[i] as number] as SampleGpu;
    const p = c.powerW[i] as number;
    const e = c.energyJ[i] as number;
    const flags = c.flags[i] as number;
    const timestampMs = epochMs(c.timestampMs[i] as number);
    const powerW = Number.isNaN(p) ? null : watts(p);
    const energyJ = Number.isNaN(e) ? null : joules(e);
    // Whole literals, not properties added later: the same shapes as a trace's samples always had.
    const sample: PowerSample = flags & SAMPLE_AVERAGED_KNOWN
      ? { timestampMs, gpuUuid: gpu.uuid, gpuIndex: gpu.index, powerW, energyJ, powerAveraged: (flags & SAMPLE_AVERAGED) !== 0 }
      : { timestampMs, gpuUuid: gpu.uuid, gpuIndex: gpu.index, powerW, energyJ };
    if (flags & SAMPLE_SIMULATED) (sample as { simulated?: boolean }).simulated = true;
    if (flags & SAMPLE_COUNTER_RUN_START) (sample as { counterRunStart?: boolean }).counterRunStart = true;
    return sample;
  }

  timestampAt(i: number): number {
    return this.columns.timestampMs[i] as number;
  }

  /** Position of sample `i`'s GPU in {@link gpus}. */
  gpuAt(i: number): number {
    return this.columns.gpu[i] as number;
  }

  /** The GPUs the samples name, by position. */
  get gpus(): readonly SampleGpu[] {
    return this.columns.gpus;
  }

  /**
   * GPUs told apart by UUID alone: the slot of each GPU position (positions are (UUID, index) pairs,
   * and one UUID may come with two indices) and each UUID's slot, slots in order of first position.
   */
  uuidSlots(): { readonly slotOfPosition: Uint32Array; readonly slotOf: ReadonlyMap<string, number> } {
    const slotOf = new Map<string, number>();
    const slotOfPosition = Uint32Array.from(this.columns.gpus, (g) => {
      let slot = slotOf.get(g.uuid);
      if (slot === undefined) slotOf.set(g.uuid, (slot = slotOf.size));
      return slot;
    });
    return { slotOfPosition, slotOf };
  }

  energyAt(i: number): number | null {
    const e = this.columns.energyJ[i] as number;
    return Number.isNaN(e) ? null : e;
  }

  powerAt(i: number): number | null {
    const p = this.columns.powerW[i] as number;
    return Number.isNaN(p) ? null : p;
  }

  /** Whether sample `i` has these SAMPLE_* bits all set. */
  flaggedAt(i: number, bits: number): boolean {
    return ((this.columns.flags[i] as number) & bits) === bits;
  }

  /** Whether any sample has a counter reading. */
  anyEnergy(): boolean {
    return this.columns.energyJ.some((e) => !Number.isNaN(e));
  }

  /** Whether any sample has these SAMPLE_* bits all set. */
  anyFlagged(bits: number): boolean {
    return this.columns.flags.some((f) => (f & bits) === bits);
  }

  /** Every sample as an object (tests, short traces). */
  toArray(): PowerSample[] {
    return Array.from({ length: this.length }, (_, i) => this.at(i));
  }
}
