import { isIP } from "node:net";

/** Addresses a server listens on for every interface: no name of its own. */
const WILDCARDS = new Set(["0.0.0.0", "::", "[::]", "::0"]);

/**
 * Decides which Host headers name this server while authentication is off. DNS rebinding
 * points an attacker's name at this machine, so a page of that name is same-origin with the
 * API and could read and change everything; its requests carry that name in Host. Allowed:
 * - IP addresses: a page can carry one in Host only when it was loaded from that address, that
 *   is, from this server;
 * - `localhost` and `*.localhost`, which browsers resolve to loopback themselves;
 * - HOST when it is a name rather than a wildcard address;
 * - ALLOWED_HOSTS entries: exact names, `.example.com` for it and its subdomains, `*` for any.
 */
export function hostAllowance(listenHost: string, extra: readonly string[] = []): (host: string) => boolean {
  const exact = new Set<string>(["localhost"]);
  const suffixes: string[] = [".localhost"];
  const own = listenHost.trim().toLowerCase().replace(/\.$/, "");
  if (!WILDCARDS.has(own)) exact.add(own);
  let any = false;
  for (const entry of extra) {
    if (entry === "*") any = true;
    else if (entry.startsWith(".")) {
      exact.add(entry.slice(1));
      suffixes.push(entry);
    } else exact.add(entry);
  }
  return (header) => {
    if (any) return true;
    const name = hostName(header);
    if (name === undefined) return false;
    return isIP(name) !== 0 || exact.has(name) || suffixes.some((s) => name.endsWith(s));
  };
}

/** The host name of a Host header, lower case, without port or final dot; undefined if malformed. */
function hostName(header: string): string | undefined {
  const h = header.trim().toLowerCase();
  const bracketed = /^\[([0-9a-f:.]+)\](?::\d*)?$/.exec(h);
  if (bracketed) return bracketed[1];
  const m = /^([^:[\]]+)(?::\d*)?$/.exec(h);
  return m?.[1]?.replace(/\.$/, "");
}
