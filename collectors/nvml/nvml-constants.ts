/**
 * NVML constants tokenwatt relies on. Values are NVIDIA's, from nvml.h (NVML API version 12, as
 * vendored in NVIDIA/go-nvml pkg/nvml/nvml.h) and the NVML API reference
 * (https://docs.nvidia.com/deploy/nvml-api/). They are ABI: never renumber them.
 */

/** nvmlReturn_t (nvml.h `typedef enum nvmlReturn_enum`). */
export const NvmlReturn = {
  SUCCESS: 0,
  ERROR_UNINITIALIZED: 1,
  ERROR_INVALID_ARGUMENT: 2,
  ERROR_NOT_SUPPORTED: 3,
  ERROR_NO_PERMISSION: 4,
  ERROR_ALREADY_INITIALIZED: 5,
  ERROR_NOT_FOUND: 6,
  ERROR_INSUFFICIENT_SIZE: 7,
  ERROR_INSUFFICIENT_POWER: 8,
  ERROR_DRIVER_NOT_LOADED: 9,
  ERROR_TIMEOUT: 10,
  ERROR_IRQ_ISSUE: 11,
  ERROR_LIBRARY_NOT_FOUND: 12,
  ERROR_FUNCTION_NOT_FOUND: 13,
  ERROR_CORRUPTED_INFOROM: 14,
  /** "The GPU has fallen off the bus or has otherwise become inaccessible." */
  ERROR_GPU_IS_LOST: 15,
  ERROR_RESET_REQUIRED: 16,
  /** "The GPU control device has been blocked by the operating system/cgroups." */
  ERROR_OPERATING_SYSTEM: 17,
  /** "RM detects a driver/library version mismatch." */
  ERROR_LIB_RM_VERSION_MISMATCH: 18,
  ERROR_IN_USE: 19,
  ERROR_UNKNOWN: 999,
} as const;

const returnNames = new Map<number, string>(
  Object.entries(NvmlReturn).map(([name, code]) => [code, `NVML_${name}`]),
);

/** The nvml.h name of a return code, e.g. 15 -> "NVML_ERROR_GPU_IS_LOST". */
export function nvmlReturnName(code: number): string {
  return returnNames.get(code) ?? `NVML return ${code}`;
}

/**
 * Field ids for nvmlDeviceGetFieldValues (nvml.h `NVML_FI_DEV_*`). POWER_INSTANT is "current GPU
 * power, supported on all architectures"; POWER_AVERAGE is "averaged over 1 sec interval, supported
 * on Ampere (except GA100) or newer". Values are in milliwatts; scopeId 0 selects the GPU itself
 * (1 would be the whole module, e.g. Grace + Hopper).
 */
export const NvmlFieldId = {
  POWER_AVERAGE: 185,
  POWER_INSTANT: 186,
} as const;
export const NVML_POWER_SCOPE_GPU = 0;

/** nvmlValueType_t: how nvmlFieldValue_t.value is to be read. */
export const NvmlValueType = {
  DOUBLE: 0,
  UNSIGNED_INT: 1,
  UNSIGNED_LONG: 2,
  UNSIGNED_LONG_LONG: 3,
  SIGNED_LONG_LONG: 4,
  SIGNED_INT: 5,
  UNSIGNED_SHORT: 6,
} as const;

/**
 * nvmlFieldValue_t, 40 bytes on LP64:
 *   unsigned int fieldId; unsigned int scopeId; long long timestamp; long long latencyUsec;
 *   nvmlValueType_t valueType; nvmlReturn_t nvmlReturn; nvmlValue_t value (8-byte union).
 */
export const FieldValueLayout = {
  SIZE: 40,
  FIELD_ID: 0,
  SCOPE_ID: 4,
  TIMESTAMP_US: 8,
  LATENCY_US: 16,
  VALUE_TYPE: 24,
  RETURN: 28,
  VALUE: 32,
} as const;

/** nvmlDeviceArchitecture_t (nvml.h `NVML_DEVICE_ARCH_*`). */
export const NvmlArchitecture = {
  KEPLER: 2,
  MAXWELL: 3,
  PASCAL: 4,
  VOLTA: 5,
  TURING: 6,
  AMPERE: 7,
  ADA: 8,
  HOPPER: 9,
  BLACKWELL: 10,
  T23X: 11,
  UNKNOWN: 0xffffffff,
} as const;

const architectureNames = new Map<number, string>([
  [2, 'Kepler'], [3, 'Maxwell'], [4, 'Pascal'], [5, 'Volta'], [6, 'Turing'], [7, 'Ampere'],
  [8, 'Ada Lovelace'], [9, 'Hopper'], [10, 'Blackwell'], [11, 'Orin'],
]);

export function architectureName(arch: number | null): string {
  if (arch === null) return 'unknown';
  return architectureNames.get(arch) ?? (arch === NvmlArchitecture.UNKNOWN ? 'unknown (newer than this build)' : `arch ${arch}`);
}

/** Buffer sizes guaranteed large enough (nvml.h NVML_DEVICE_UUID_V2_BUFFER_SIZE etc.). */
export const NvmlBufferSize = {
  UUID: 96,
  NAME: 96,
  DRIVER_VERSION: 80,
} as const;

/** nvmlDeviceGetMigMode current/pending values. */
export const NVML_DEVICE_MIG_ENABLE = 1;
