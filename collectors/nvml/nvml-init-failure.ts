import { NvmlReturn, nvmlReturnName } from './nvml-constants.js';

/** Why NVML could not be used at all, as a metric/readiness label. */
export type NvmlFailureReason =
  | 'library_missing'
  | 'symbol_missing'
  | 'driver_not_loaded'
  | 'no_permission'
  | 'version_mismatch'
  | 'blocked_by_os'
  | 'no_gpus'
  | 'timeout'
  | 'init_failed';

/** A failure to start NVML, with what to do about it. Plain data: it crosses the worker boundary. */
export interface NvmlInitFailure {
  readonly reason: NvmlFailureReason;
  /** nvmlReturn_t of the failing call, when there was one. */
  readonly code: number | null;
  readonly message: string;
  /** What the operator should change. */
  readonly fix: string;
}

/** Thrown by NvmlPowerSource.init() when NVML cannot be used on this node. */
export class NvmlInitError extends Error {
  readonly reason: NvmlFailureReason;
  readonly code: number | null;
  readonly fix: string;
  /** The message without the fix. */
  readonly detail: string;

  constructor(failure: NvmlInitFailure) {
    super(`${failure.message} Fix: ${failure.fix}`);
    this.name = 'NvmlInitError';
    this.reason = failure.reason;
    this.code = failure.code;
    this.fix = failure.fix;
    this.detail = failure.message;
  }

  toFailure(): NvmlInitFailure {
    return { reason: this.reason, code: this.code, message: this.detail, fix: this.fix };
  }
}

const LIBRARY_HINT =
  'install the NVIDIA driver on the node; in a container run with the NVIDIA runtime (runtimeClassName: nvidia, ' +
  'NVIDIA_DRIVER_CAPABILITIES including "utility") so that libnvidia-ml.so.1 is mounted, or mount the driver ' +
  'directory and point --nvml-library / TOKENWATT_NVML_LIBRARY at it (e.g. /usr/local/nvidia/lib64/libnvidia-ml.so.1)';

/** The library (or one of its symbols) could not be loaded. */
export function describeLibraryLoadFailure(libraryPath: string, error: unknown): NvmlInitFailure {
  const detail = error instanceof Error ? error.message : String(error);
  if (/cannot find function|symbol/i.test(detail)) {
    return {
      reason: 'symbol_missing',
      code: NvmlReturn.ERROR_FUNCTION_NOT_FOUND,
      message: `NVML library ${libraryPath} lacks a function tokenwatt needs (${detail}).`,
      fix: 'upgrade the NVIDIA driver (R450 or newer provides every NVML call tokenwatt uses), or point --nvml-library at the libnvidia-ml.so.1 of the running driver',
    };
  }
  return {
    reason: 'library_missing',
    code: NvmlReturn.ERROR_LIBRARY_NOT_FOUND,
    message: `NVML library ${libraryPath} could not be loaded (${detail}).`,
    fix: LIBRARY_HINT,
  };
}

/** nvmlInit_v2 returned `code` (its nvmlErrorString is `text`). */
export function describeInitReturn(code: number, text: string, libraryPath: string): NvmlInitFailure {
  const name = `${nvmlReturnName(code)} (${text})`;
  switch (code) {
    case NvmlReturn.ERROR_DRIVER_NOT_LOADED:
      return {
        reason: 'driver_not_loaded',
        code,
        message: `nvmlInit failed: ${name}: the NVIDIA kernel driver is not running.`,
        fix: 'load the driver on the node (modprobe nvidia, or check `nvidia-smi` / dmesg); in a container make sure the /dev/nvidia* device nodes are mounted (NVIDIA runtime or the NVIDIA device plugin)',
      };
    case NvmlReturn.ERROR_NO_PERMISSION:
      return {
        reason: 'no_permission',
        code,
        message: `nvmlInit failed: ${name}: this process may not open the GPU device nodes.`,
        fix: 'give the agent read/write access to /dev/nvidiactl and /dev/nvidia* (run it with the NVIDIA runtime or device plugin, or in a group that owns the device nodes); NVML needs no root for power and energy readings',
      };
    case NvmlReturn.ERROR_LIB_RM_VERSION_MISMATCH:
      return {
        reason: 'version_mismatch',
        code,
        message: `nvmlInit failed: ${name}: ${libraryPath} does not belong to the kernel driver that is loaded.`,
        fix: 'the driver was upgraded without a reboot, or the container mounts another driver\'s library: reboot the node (or reload the nvidia kernel modules), or point --nvml-library at the libnvidia-ml.so.1 matching `cat /proc/driver/nvidia/version`',
      };
    case NvmlReturn.ERROR_OPERATING_SYSTEM:
      return {
        reason: 'blocked_by_os',
        code,
        message: `nvmlInit failed: ${name}: the operating system or a cgroup blocked access to the GPU devices.`,
        fix: 'allow the nvidia device nodes in the container\'s device cgroup (NVIDIA runtime or device plugin)',
      };
    case NvmlReturn.ERROR_LIBRARY_NOT_FOUND:
      return { reason: 'library_missing', code, message: `nvmlInit failed: ${name}.`, fix: LIBRARY_HINT };
    default:
      return {
        reason: 'init_failed',
        code,
        message: `nvmlInit failed: ${name}.`,
        fix: 'check `nvidia-smi` on the node and the kernel log (dmesg) for NVRM errors; tokenwatt falls back to nvidia-smi when it works',
      };
  }
}

/** NVML started but reported no usable GPU. */
export function describeNoGpus(detail: string, fix?: string): NvmlInitFailure {
  return {
    reason: 'no_gpus',
    code: null,
    message: `NVML started but found no usable GPU (${detail}).`,
    fix: fix ?? 'check that the GPUs are visible to this process (NVIDIA_VISIBLE_DEVICES, the device plugin\'s allocation) and healthy (`nvidia-smi -L`)',
  };
}

/** A call during start-up did not return in time. */
export function describeInitTimeout(call: string, timeoutMs: number): NvmlInitFailure {
  return {
    reason: 'timeout',
    code: null,
    message: `${call} did not return within ${timeoutMs} ms while starting NVML.`,
    fix: 'the driver is hung or very slow: enable persistence mode (nvidia-smi -pm 1, or nvidia-persistenced) so that NVML does not re-initialise the GPUs on every start, and check dmesg for Xid errors',
  };
}
