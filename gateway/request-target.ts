/**
 * The URL of an HTTP request's target, or undefined when it is not one. The usual `new URL(target, base)` is
 * wrong for hostile targets: `//evil/mcp/x` would name a host, and some targets make it throw. A target in
 * origin form (`/path?query`) is read as a path on this gateway, whatever follows its first slash; one in
 * absolute form (`http://host/path`, which proxies send) is read as the URL it is.
 */
export function requestTarget(target: string | undefined): URL | undefined {
  if (target === undefined || target === '') return undefined
  try {
    return target.startsWith('/') ? new URL(`http://gateway${target}`) : new URL(target)
  } catch {
    return undefined
  }
}
