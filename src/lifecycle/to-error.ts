// The one place where anything thrown becomes an Error (as connect-es's ConnectError.from is): code
// catches `unknown`, and logs, causes and messages need an Error. Never throws, never flattens.

/** `reason` as an Error: an Error as it is; anything else wrapped, with the original kept as `cause`. */
export function toError(reason: unknown): Error {
  if (reason instanceof Error) return reason;
  return new Error(typeof reason === "string" ? reason : describe(reason), { cause: reason });
}

function describe(reason: unknown): string {
  if (typeof reason === "object" && reason !== null && typeof (reason as { message?: unknown }).message === "string")
    return (reason as { message: string }).message;
  return String(reason);
}
