import type { RequestResult } from '../../model/request-result.js';
import type { SettlementMetrics } from '../../agent/settler.js';

/** SettlementMetrics that record nothing: tests extend it and override only what they check. */
export class NullSettlementMetrics implements SettlementMetrics {
  setGpuPower(_index: number, _uuid: string, _power: number): void {}
  sampleTaken(_gpuIndex: number, _n: number): void {}
  addMeasuredEnergy(_index: number, _uuid: string, _joules: number): void {}
  addIdleEnergy(_index: number, _joules: number): void {}
  addUnattributedEnergy(_index: number, _joules: number): void {}
  addEstimatedEnergy(_index: number, _joules: number): void {}
  addCoveredTime(_index: number, _uuid: string, _ms: number): void {}
  requestsFinalized(_results: readonly RequestResult[]): void {}
  taskFinalized(_task: { tier: string; succeeded: boolean; joules: number; wasteJ: number; continued?: boolean; failedJ?: number }): void {}
  settled(_settledUntilMs: number, _residualsJ: readonly number[]): void {}
  setPendingAttributedEnergy(_joules: number): void {}
  addHostEnergy(_source: string, _joules: number, _estimated: boolean): void {}
}
