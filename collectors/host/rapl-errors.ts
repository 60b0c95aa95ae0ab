/** Why RAPL cannot be used on this node, with what to change. */
export type RaplFailureReason = 'absent' | 'permission' | 'unreadable';

export class RaplUnavailableError extends Error {
  /** @param detail what went wrong, without the fix */
  constructor(readonly reason: RaplFailureReason, readonly detail: string, readonly fix: string) {
    super(`${detail} Fix: ${fix}`);
    this.name = 'RaplUnavailableError';
  }
}

/**
 * How a container reaches the host's RAPL zones. /sys/class/powercap/intel-rapl:N are only symlinks
 * into /sys/devices/virtual/powercap, which container runtimes mask, so mounting /sys/class/powercap
 * gives dangling links: the real tree has to be mounted (the Helm chart mounts it at /host/powercap).
 */
const MOUNT_IN_CONTAINER =
  'mount the host\'s /sys/devices/virtual/powercap read-only (hostPath; /sys/class/powercap only links into it) ' +
  'and point hostPower.powercapRoot at its intel-rapl directory';

/**
 * energy_uj is readable by root only since Linux 5.10 (the PLATYPUS power side channel,
 * CVE-2020-8694), so an unprivileged agent sees the zones but cannot read them.
 */
export function raplPermissionError(path: string): RaplUnavailableError {
  return new RaplUnavailableError(
    'permission',
    `${path} is readable by root only (Linux 5.10+, CVE-2020-8694), and this process is not allowed to read it.`,
    `run the agent as root (Kubernetes: securityContext runAsUser: 0, and ${MOUNT_IN_CONTAINER}; ` +
      'the Helm chart does all of this with --set rapl.enabled=true), ' +
      'or grant read access on the node (e.g. a udev rule or systemd-tmpfiles entry doing chmod o+r /sys/class/powercap/intel-rapl:*/energy_uj ' +
      '/sys/class/powercap/intel-rapl:*:*/energy_uj), or configure a host overhead in watts (hostPower.overheadW), which is reported as estimated',
  );
}

export function raplAbsentError(root: string): RaplUnavailableError {
  return new RaplUnavailableError(
    'absent',
    `no RAPL package zone under ${root} (no intel-rapl powercap driver, a VM, or, in a container, the host's /sys/devices/virtual/powercap not mounted).`,
    `in a container, ${MOUNT_IN_CONTAINER}, as the Helm chart does with --set rapl.enabled=true; ` +
      'on the node, load the intel_rapl_common / rapl kernel module; ' +
      'or configure a host overhead in watts (hostPower.overheadW), which is reported as estimated',
  );
}
