/**
 * Every NVML symbol tokenwatt binds. All are exported by the drivers in the real captures
 * (test/fixtures/nvidia-smi, "nvml-symbols" sections), which a test checks.
 */
export const NVML_SYMBOLS_USED = [
  'nvmlInit_v2',
  'nvmlShutdown',
  'nvmlErrorString',
  'nvmlSystemGetDriverVersion',
  'nvmlDeviceGetCount_v2',
  'nvmlDeviceGetHandleByIndex_v2',
  'nvmlDeviceGetHandleByUUID',
  'nvmlDeviceGetUUID',
  'nvmlDeviceGetName',
  'nvmlDeviceGetEnforcedPowerLimit',
  'nvmlDeviceGetArchitecture',
  'nvmlDeviceGetCudaComputeCapability',
  'nvmlDeviceGetMigMode',
  'nvmlDeviceGetMaxMigDeviceCount',
  'nvmlDeviceGetMigDeviceHandleByIndex',
  'nvmlDeviceGetTotalEnergyConsumption',
  'nvmlDeviceGetPowerUsage',
  'nvmlDeviceGetFieldValues',
] as const;
