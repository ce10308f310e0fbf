// Pure: which addresses a job's traffic may reach through gnomon's egress proxy. The host itself
// (loopback, its own interface addresses), link-local (cloud metadata at 169.254.169.254) and
// multicast are never reachable; networks the operator lists as private are not, unless listed as
// an exception or named by the job's own forge. Decides on resolved addresses only, never on names.
import { BlockList, isIP } from "node:net";

export interface EgressPolicyOptions {
  /** CIDRs kept from jobs besides the host's own addresses (the operator's private networks). */
  readonly denyNetworks: readonly string[];
  /** CIDRs reachable although inside denyNetworks (a package mirror on the LAN). */
  readonly allowNetworks: readonly string[];
}

export interface EgressPolicy {
  readonly denyNetworks: readonly string[];
  readonly allowNetworks: readonly string[];
  readonly deny: BlockList;
  readonly allow: BlockList;
}

export type Verdict = { readonly ok: true } | { readonly ok: false; readonly why: string };

/** A CIDR gnomon cannot read: the message names it and the form expected. */
export class BadNetworkError extends Error {
  override readonly name = "BadNetworkError";
  readonly code = "egress.bad-network";
  constructor(readonly cidr: string) {
    super(`"${cidr}" is not a network: write an address and a prefix length, e.g. "10.0.0.0/8" or "fc00::/7"`);
  }
}

/** Never reachable, whatever the operator lists: what these are tells the job why it was refused. */
const NEVER: readonly (readonly [string, string])[] = [
  ["0.0.0.0/8", "an unspecified address"],
  ["127.0.0.0/8", "a loopback address of the gnomon host"],
  ["169.254.0.0/16", "a link-local address (cloud metadata services live there)"],
  ["224.0.0.0/4", "a multicast address"],
  ["240.0.0.0/4", "a reserved or broadcast address"],
  ["::/128", "an unspecified address"],
  ["::1/128", "a loopback address of the gnomon host"],
  ["fe80::/10", "a link-local address"],
  ["ff00::/8", "a multicast address"],
];

const never = NEVER.map(([cidr, why]) => ({ list: blockOf([cidr]), why }));

/** Parses "addr/len" into BlockList arguments, or throws BadNetworkError. */
export function parseNetwork(cidr: string): { address: string; prefix: number; family: "ipv4" | "ipv6" } {
  const m = /^([^/]+)\/(\d{1,3})$/.exec(cidr.trim());
  const version = m ? isIP(m[1]!) : 0;
  const prefix = m ? Number(m[2]) : Number.NaN;
  if (!m || version === 0 || prefix > (version === 4 ? 32 : 128)) throw new BadNetworkError(cidr);
  return { address: m[1]!, prefix, family: version === 4 ? "ipv4" : "ipv6" };
}

function blockOf(cidrs: readonly string[]): BlockList {
  const list = new BlockList();
  for (const cidr of cidrs) {
    const n = parseNetwork(cidr);
    list.addSubnet(n.address, n.prefix, n.family);
  }
  return list;
}

export function egressPolicy(opts: EgressPolicyOptions): EgressPolicy {
  return {
    denyNetworks: [...opts.denyNetworks],
    allowNetworks: [...opts.allowNetworks],
    deny: blockOf(opts.denyNetworks),
    allow: blockOf(opts.allowNetworks),
  };
}

/** `::ffff:127.0.0.1` is 127.0.0.1: judge IPv4-mapped IPv6 addresses as the IPv4 address they carry. */
export function unmapped(address: string): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  return m ? m[1]! : address;
}

/**
 * Whether a job may connect to `address` (an IP, already resolved). `hostAddresses` are this host's
 * own interface addresses, read at the moment of the connection. `forgeEndpoint` is true when the
 * job connects to a host:port its forge gave it (its server, API, Actions services): those pass the
 * operator's private networks, but never reach this host.
 */
export function judgeAddress(
  address: string,
  policy: EgressPolicy,
  hostAddresses: readonly string[],
  forgeEndpoint = false,
): Verdict {
  const ip = unmapped(address);
  const family = isIP(ip) === 6 ? "ipv6" : "ipv4";
  if (isIP(ip) === 0) return { ok: false, why: `"${address}" is not an IP address` };
  for (const n of never) if (n.list.check(ip, family)) return { ok: false, why: `${ip} is ${n.why}` };
  if (isHostAddress(ip, hostAddresses)) return { ok: false, why: `${ip} is an address of the gnomon host` };
  if (forgeEndpoint || policy.allow.check(ip, family)) return { ok: true };
  if (policy.deny.check(ip, family)) {
    const net = policy.denyNetworks.find((c) => blockOf([c]).check(ip, family)) ?? "a private network";
    return {
      ok: false,
      why: `${ip} is in ${net}, which this host keeps from jobs (orchestrator.egress.denyNetworks)`,
    };
  }
  return { ok: true };
}

/** Compares as addresses, not strings: fd00::2 and fd00:0:0::2 are one address. */
function isHostAddress(ip: string, hostAddresses: readonly string[]): boolean {
  const own = new BlockList();
  for (const a of hostAddresses.map(unmapped)) {
    const v = isIP(a);
    if (v !== 0) own.addAddress(a, v === 4 ? "ipv4" : "ipv6");
  }
  return own.check(ip, isIP(ip) === 4 ? "ipv4" : "ipv6");
}
