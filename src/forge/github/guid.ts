// Stable GUIDs derived from text (UUIDv8 over SHA-256): ids for the timeline records gnomon adds
// ("Set up job", post steps …) and for job ids GitHub writes without an RFC 4122 version.
import { createHash } from "node:crypto";

export function derivedGuid(seed: string): string {
  const h = createHash("sha256").update(seed).digest("hex");
  const variant = ((Number.parseInt(h[16]!, 16) & 0x3) | 0x8).toString(16);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-8${h.slice(13, 16)}-${variant}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}
