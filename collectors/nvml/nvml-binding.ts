import koffi, { type IKoffiLib } from 'koffi';
import { FieldValueLayout, NvmlBufferSize, NvmlReturn, NvmlValueType } from './nvml-constants.js';
import { describeLibraryLoadFailure, NvmlInitError } from './nvml-init-failure.js';
import { NVML_SYMBOLS_USED } from './nvml-symbols.js';

export { NVML_SYMBOLS_USED };

/** Default library name: resolved by the dynamic loader (ld.so.cache, LD_LIBRARY_PATH). */
export const DEFAULT_NVML_LIBRARY = 'libnvidia-ml.so.1';


/** An opaque nvmlDevice_t; only meaningful inside the thread that obtained it. */
export type NvmlDeviceHandle = { readonly __nvmlDevice: unique symbol };

/** A call's nvmlReturn_t, with its value when it succeeded. */
export type NvmlResult<T> = { readonly ok: true; readonly rc: 0; readonly value: T } | { readonly ok: false; readonly rc: number };

const ok = <T>(value: T): NvmlResult<T> => ({ ok: true, rc: 0, value });
const failed = (rc: number): NvmlResult<never> => ({ ok: false, rc });

/**
 * Typed access to libnvidia-ml through koffi. Signatures follow nvml.h exactly (NVML API 12):
 *   nvmlReturn_t nvmlInit_v2(void);  nvmlReturn_t nvmlShutdown(void);
 *   const char *nvmlErrorString(nvmlReturn_t result);
 *   nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length);
 *   nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *deviceCount);
 *   nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device);
 *   nvmlReturn_t nvmlDeviceGetHandleByUUID(const char *uuid, nvmlDevice_t *device);
 *   nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t device, char *uuid, unsigned int length);
 *   nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t device, char *name, unsigned int length);
 *   nvmlReturn_t nvmlDeviceGetEnforcedPowerLimit(nvmlDevice_t device, unsigned int *limit);      // mW
 *   nvmlReturn_t nvmlDeviceGetArchitecture(nvmlDevice_t device, nvmlDeviceArchitecture_t *arch);
 *   nvmlReturn_t nvmlDeviceGetCudaComputeCapability(nvmlDevice_t device, int *major, int *minor);
 *   nvmlReturn_t nvmlDeviceGetMigMode(nvmlDevice_t device, unsigned int *currentMode, unsigned int *pendingMode);
 *   nvmlReturn_t nvmlDeviceGetMaxMigDeviceCount(nvmlDevice_t device, unsigned int *count);
 *   nvmlReturn_t nvmlDeviceGetMigDeviceHandleByIndex(nvmlDevice_t device, unsigned int index, nvmlDevice_t *migDevice);
 *   nvmlReturn_t nvmlDeviceGetTotalEnergyConsumption(nvmlDevice_t device, unsigned long long *energy); // mJ since driver load
 *   nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t device, unsigned int *power);               // mW
 *   nvmlReturn_t nvmlDeviceGetFieldValues(nvmlDevice_t device, int valuesCount, nvmlFieldValue_t *values);
 * Out-parameters go through preallocated buffers, so the sampling path allocates little.
 */
export class NvmlBinding {
  readonly libraryPath: string;
  private readonly fn: ReturnType<typeof bindFunctions>;
  private readonly u32 = Buffer.alloc(4);
  private readonly u32b = Buffer.alloc(4);
  private readonly u64 = Buffer.alloc(8);
  private readonly text = Buffer.alloc(Math.max(NvmlBufferSize.UUID, NvmlBufferSize.NAME, NvmlBufferSize.DRIVER_VERSION));
  private readonly fieldBuf = Buffer.alloc(FieldValueLayout.SIZE);
  /** nvmlDevice_t out-parameter: a raw pointer-sized buffer, decoded by us after the call (see bindFunctions). */
  private readonly handleOut = Buffer.alloc(8);

  /** Loads the library and resolves every symbol; throws NvmlInitError (library_missing / symbol_missing). */
  constructor(libraryPath: string = DEFAULT_NVML_LIBRARY) {
    this.libraryPath = libraryPath;
    let lib: IKoffiLib;
    try {
      lib = koffi.load(libraryPath);
    } catch (error) {
      throw new NvmlInitError(describeLibraryLoadFailure(libraryPath, error));
    }
    try {
      this.fn = bindFunctions(lib);
    } catch (error) {
      throw new NvmlInitError(describeLibraryLoadFailure(libraryPath, error));
    }
  }

  init(): number {
    return this.fn.init();
  }

  shutdown(): number {
    return this.fn.shutdown();
  }

  errorString(rc: number): string {
    return this.fn.errorString(rc) ?? `NVML return ${rc}`;
  }

  driverVersion(): NvmlResult<string> {
    return this.textResult(this.fn.driverVersion(this.text, NvmlBufferSize.DRIVER_VERSION));
  }

  deviceCount(): NvmlResult<number> {
    return this.u32Result(this.fn.deviceCount(this.u32));
  }

  handleByIndex(index: number): NvmlResult<NvmlDeviceHandle> {
    return this.handleResult(this.fn.handleByIndex(index, this.handleOut));
  }

  /** A fresh handle for the GPU (or MIG device) with this UUID: NOT_FOUND when NVML knows none. */
  handleByUuid(uuid: string): NvmlResult<NvmlDeviceHandle> {
    return this.handleResult(this.fn.handleByUuid(uuid, this.handleOut));
  }

  uuid(device: NvmlDeviceHandle): NvmlResult<string> {
    return this.textResult(this.fn.uuid(device, this.text, NvmlBufferSize.UUID));
  }

  name(device: NvmlDeviceHandle): NvmlResult<string> {
    return this.textResult(this.fn.name(device, this.text, NvmlBufferSize.NAME));
  }

  enforcedPowerLimitMw(device: NvmlDeviceHandle): NvmlResult<number> {
    return this.u32Result(this.fn.enforcedPowerLimit(device, this.u32));
  }

  architecture(device: NvmlDeviceHandle): NvmlResult<number> {
    return this.u32Result(this.fn.architecture(device, this.u32));
  }

  computeCapability(device: NvmlDeviceHandle): NvmlResult<{ major: number; minor: number }> {
    const rc = this.fn.computeCapability(device, this.u32, this.u32b);
    return rc === NvmlReturn.SUCCESS ? ok({ major: this.u32.readInt32LE(0), minor: this.u32b.readInt32LE(0) }) : failed(rc);
  }

  migMode(device: NvmlDeviceHandle): NvmlResult<{ current: number; pending: number }> {
    const rc = this.fn.migMode(device, this.u32, this.u32b);
    return rc === NvmlReturn.SUCCESS ? ok({ current: this.u32.readUInt32LE(0), pending: this.u32b.readUInt32LE(0) }) : failed(rc);
  }

  maxMigDeviceCount(device: NvmlDeviceHandle): NvmlResult<number> {
    return this.u32Result(this.fn.maxMigDeviceCount(device, this.u32));
  }

  migDeviceHandle(device: NvmlDeviceHandle, index: number): NvmlResult<NvmlDeviceHandle> {
    return this.handleResult(this.fn.migDeviceHandle(device, index, this.handleOut));
  }

  /** Cumulative energy in millijoules since the driver was loaded (Volta and newer). */
  totalEnergyMj(device: NvmlDeviceHandle): NvmlResult<number> {
    const rc = this.fn.totalEnergy(device, this.u64);
    // mJ fit a double exactly up to 2^53 mJ (285 years at 1 kW).
    return rc === NvmlReturn.SUCCESS ? ok(Number(this.u64.readBigUInt64LE(0))) : failed(rc);
  }

  /** Power in milliwatts (a 1 s average on Ampere and newer except GA100). */
  powerUsageMw(device: NvmlDeviceHandle): NvmlResult<number> {
    return this.u32Result(this.fn.powerUsage(device, this.u32));
  }

  /**
   * One field of nvmlDeviceGetFieldValues, read as a number. The call's own return code comes
   * first; when it succeeded, the field's nvmlReturn decides (value is undefined otherwise).
   */
  fieldValue(device: NvmlDeviceHandle, fieldId: number, scopeId: number): NvmlResult<number> {
    const v = this.fieldBuf;
    v.fill(0);
    v.writeUInt32LE(fieldId, FieldValueLayout.FIELD_ID);
    v.writeUInt32LE(scopeId, FieldValueLayout.SCOPE_ID);
    const rc = this.fn.fieldValues(device, 1, v);
    if (rc !== NvmlReturn.SUCCESS) return failed(rc);
    const fieldRc = v.readInt32LE(FieldValueLayout.RETURN);
    if (fieldRc !== NvmlReturn.SUCCESS) return failed(fieldRc);
    const value = readFieldValue(v, v.readUInt32LE(FieldValueLayout.VALUE_TYPE));
    return value === null ? failed(NvmlReturn.ERROR_UNKNOWN) : ok(value);
  }

  private u32Result(rc: number): NvmlResult<number> {
    return rc === NvmlReturn.SUCCESS ? ok(this.u32.readUInt32LE(0)) : failed(rc);
  }

  private textResult(rc: number): NvmlResult<string> {
    if (rc !== NvmlReturn.SUCCESS) return failed(rc);
    const end = this.text.indexOf(0);
    const value = this.text.toString('utf8', 0, end < 0 ? this.text.length : end);
    this.text.fill(0);
    return ok(value);
  }

  private handleResult(rc: number): NvmlResult<NvmlDeviceHandle> {
    const handle: unknown = rc === NvmlReturn.SUCCESS ? koffi.decode(this.handleOut, 'void *') : null;
    this.handleOut.fill(0);
    if (rc !== NvmlReturn.SUCCESS) return failed(rc);
    return handle ? ok(handle as NvmlDeviceHandle) : failed(NvmlReturn.ERROR_UNKNOWN);
  }
}

function readFieldValue(v: Buffer, type: number): number | null {
  const at = FieldValueLayout.VALUE;
  switch (type) {
    case NvmlValueType.DOUBLE: return v.readDoubleLE(at);
    case NvmlValueType.UNSIGNED_INT: return v.readUInt32LE(at);
    case NvmlValueType.UNSIGNED_LONG: // unsigned long is 8 bytes on LP64 Linux
    case NvmlValueType.UNSIGNED_LONG_LONG: return Number(v.readBigUInt64LE(at));
    case NvmlValueType.SIGNED_LONG_LONG: return Number(v.readBigInt64LE(at));
    case NvmlValueType.SIGNED_INT: return v.readInt32LE(at);
    case NvmlValueType.UNSIGNED_SHORT: return v.readUInt16LE(at);
    default: return null;
  }
}

function bindFunctions(lib: IKoffiLib) {
  // nvmlDevice_t is `typedef struct nvmlDevice_st* nvmlDevice_t`, passed as a plain pointer. Its
  // out-parameter is a buffer we decode after the call, not a koffi.out() array: koffi converts
  // such an array on the call's return, and when the worker was terminated while the call hung,
  // that conversion throws into the dying thread and aborts the whole process.
  const device = 'void *';
  const deviceOut = 'void *';
  return {
    init: lib.func('nvmlInit_v2', 'int', []) as () => number,
    shutdown: lib.func('nvmlShutdown', 'int', []) as () => number,
    errorString: lib.func('nvmlErrorString', 'const char *', ['int']) as (rc: number) => string | null,
    driverVersion: lib.func('nvmlSystemGetDriverVersion', 'int', ['void *', 'unsigned int']) as (out: Buffer, len: number) => number,
    deviceCount: lib.func('nvmlDeviceGetCount_v2', 'int', ['void *']) as (out: Buffer) => number,
    handleByIndex: lib.func('nvmlDeviceGetHandleByIndex_v2', 'int', ['unsigned int', deviceOut]) as (i: number, out: Buffer) => number,
    handleByUuid: lib.func('nvmlDeviceGetHandleByUUID', 'int', ['const char *', deviceOut]) as (uuid: string, out: Buffer) => number,
    uuid: lib.func('nvmlDeviceGetUUID', 'int', [device, 'void *', 'unsigned int']) as (d: NvmlDeviceHandle, out: Buffer, len: number) => number,
    name: lib.func('nvmlDeviceGetName', 'int', [device, 'void *', 'unsigned int']) as (d: NvmlDeviceHandle, out: Buffer, len: number) => number,
    enforcedPowerLimit: lib.func('nvmlDeviceGetEnforcedPowerLimit', 'int', [device, 'void *']) as (d: NvmlDeviceHandle, out: Buffer) => number,
    architecture: lib.func('nvmlDeviceGetArchitecture', 'int', [device, 'void *']) as (d: NvmlDeviceHandle, out: Buffer) => number,
    computeCapability: lib.func('nvmlDeviceGetCudaComputeCapability', 'int', [device, 'void *', 'void *']) as (d: NvmlDeviceHandle, major: Buffer, minor: Buffer) => number,
    migMode: lib.func('nvmlDeviceGetMigMode', 'int', [device, 'void *', 'void *']) as (d: NvmlDeviceHandle, current: Buffer, pending: Buffer) => number,
    maxMigDeviceCount: lib.func('nvmlDeviceGetMaxMigDeviceCount', 'int', [device, 'void *']) as (d: NvmlDeviceHandle, out: Buffer) => number,
    migDeviceHandle: lib.func('nvmlDeviceGetMigDeviceHandleByIndex', 'int', [device, 'unsigned int', deviceOut]) as (d: NvmlDeviceHandle, i: number, out: Buffer) => number,
    totalEnergy: lib.func('nvmlDeviceGetTotalEnergyConsumption', 'int', [device, 'void *']) as (d: NvmlDeviceHandle, out: Buffer) => number,
    powerUsage: lib.func('nvmlDeviceGetPowerUsage', 'int', [device, 'void *']) as (d: NvmlDeviceHandle, out: Buffer) => number,
    fieldValues: lib.func('nvmlDeviceGetFieldValues', 'int', [device, 'int', 'void *']) as (d: NvmlDeviceHandle, count: number, values: Buffer) => number,
  };
}
