// How the fake GitHub answers what it refuses: an HttpError with the status and body the real
// service sends, in the shape of the service (VSS for the classic tenant, the broker's, the run
// service's), and small readers of what it was sent.

/** a < b for x.y.z versions. */
export function versionLess(a: string, b: string): boolean {
  const pa = a.split(".").map(Number);
  const pb = b.split(".").map(Number);
  for (let i = 0; i < 3; i += 1) {
    if ((pa[i] ?? 0) !== (pb[i] ?? 0)) return (pa[i] ?? 0) < (pb[i] ?? 0);
  }
  return false;
}

export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly body: unknown,
  ) {
    super(`HTTP ${status}`);
  }
}

export const vssError = (status: number, typeKey: string, message: string) =>
  new HttpError(status, {
    message,
    typeKey,
    typeName: `GitHub.DistributedTask.WebApi.${typeKey}`,
    errorCode: 0,
    eventId: 3000,
  });
export const brokerError = (status: number, errorKind: string, errorMessage: string) =>
  new HttpError(status, { source: "actions-broker-listener", errorKind, statusCode: status, errorMessage });
export const runError = (status: number, errorMessage: string) =>
  new HttpError(status, { source: "actions-run-service", statusCode: status, errorMessage });

/** The text as a JSON object, or undefined when it is not one. */
export function parseObject(text: string): Record<string, unknown> | undefined {
  try {
    const v = JSON.parse(text) as unknown;
    return typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** Every string inside a JSON text (keys too), decoded, one per line after a blank line; "" for other text. */
export function decodedStrings(text: string): string {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return "";
  }
  const out: string[] = [];
  const walk = (x: unknown): void => {
    if (typeof x === "string") out.push(x);
    else if (Array.isArray(x)) for (const e of x) walk(e);
    else if (typeof x === "object" && x !== null)
      for (const [k, e] of Object.entries(x)) {
        out.push(k);
        walk(e);
      }
  };
  walk(v);
  return out.length > 0 ? `\n\n${out.join("\n")}` : "";
}

/** The answer to a request no route of the fake takes. */
export function noRoute(method: string, path: string): HttpError {
  return new HttpError(404, { message: `the fake GitHub has no route ${method} ${path}` });
}
