// Encoding of contract messages for the wire (JSON bytes) and decoding: a message of an unknown
// version or of the wrong shape is refused with a reason, never half-accepted. Fields this program
// does not know are dropped, not refused, as protobuf readers do: within one version, additions are
// optional fields, so hosts can be upgraded one at a time.
import type { z } from "zod";
import { Cancel } from "./cancel.js";
import { JobEvent } from "./job-event.js";
import { JobRequest } from "./job-request.js";

export const CONTRACT_VERSION = 1;

export type Decoded<T> = { ok: true; value: T } | { ok: false; reason: string };

export function encode(message: JobRequest | JobEvent | Cancel): Buffer {
  return Buffer.from(JSON.stringify(message), "utf8");
}

function decodeWith<S extends z.ZodType>(schema: S, name: string, bytes: Uint8Array | string): Decoded<z.output<S>> {
  let raw: unknown;
  try {
    raw = JSON.parse(typeof bytes === "string" ? bytes : Buffer.from(bytes).toString("utf8"));
  } catch (err) {
    return { ok: false, reason: `${name} is not valid JSON: ${(err as Error).message}` };
  }
  if (typeof raw !== "object" || raw === null) return { ok: false, reason: `${name} is not a JSON object` };
  const v = (raw as { v?: unknown }).v;
  if (v !== CONTRACT_VERSION)
    return {
      ok: false,
      reason: `${name} version ${JSON.stringify(v)} is not supported (this gnomon speaks version ${CONTRACT_VERSION}); run the same gnomon version on every host`,
    };
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    return { ok: false, reason: `invalid ${name}: ${issuesText(parsed.error)}` };
  }
  return { ok: true, value: parsed.data };
}

/** What a schema refused, for a message: its first `max` issues as "path: problem", joined by "; ". */
export function issuesText(error: z.ZodError, max = 3): string {
  return error.issues
    .slice(0, max)
    .map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`)
    .join("; ");
}

export const decodeJobRequest = (b: Uint8Array | string): Decoded<JobRequest> =>
  decodeWith(JobRequest, "JobRequest", b);
export const decodeJobEvent = (b: Uint8Array | string): Decoded<JobEvent> => decodeWith(JobEvent, "JobEvent", b);
export const decodeCancel = (b: Uint8Array | string): Decoded<Cancel> => decodeWith(Cancel, "Cancel", b);
