/** 127.0.0.0/8, ::1 (with or without brackets, IPv4-mapped too) and localhost. */
const LOOPBACK = /^(?:(?:::ffff:)?127\.\d+\.\d+\.\d+|::1|\[::1\]|localhost)$/i;

/** Whether a bind address keeps a listener on this host: only its own processes can reach it. */
export function isLoopbackHost(host: string): boolean {
  return LOOPBACK.test(host.trim());
}
