// The per-VM disk: a qcow2 copy-on-write overlay on the image's read-only base, grown to the
// catalog's disk size when that is larger than the base. Creating and deleting it; nothing else.
import { rm } from "node:fs/promises";
import { isAbsolute, resolve } from "node:path";
import { runTool } from "./tool.js";

const virtualSizes = new Map<string, Promise<number>>();

/** The base image's virtual size in bytes (qemu-img info), asked once per path and process. */
export function virtualSize(path: string, format: string, signal?: AbortSignal): Promise<number> {
  const key = `${format}:${path}`;
  let size = virtualSizes.get(key);
  if (!size) {
    size = runTool("qemu-img", ["info", "--output=json", "-f", format, path], { signal }).then(
      (r) => (JSON.parse(r.stdout) as { "virtual-size": number })["virtual-size"],
    );
    size.catch(() => virtualSizes.delete(key));
    virtualSizes.set(key, size);
  }
  return size;
}

/**
 * Pure: the qemu-img arguments for an overlay of `base` (an absolute path: qemu-img resolves a
 * relative backing path against the overlay's folder), with a size only when it grows the disk.
 */
export function overlayArgs(base: string, baseFormat: string, overlay: string, sizeBytes?: number): string[] {
  if (!isAbsolute(base)) throw new TypeError(`the base image path must be absolute, got ${base}`);
  const args = ["create", "-q", "-f", "qcow2", "-F", baseFormat, "-b", base, overlay];
  if (sizeBytes !== undefined) args.push(String(sizeBytes));
  return args;
}

export async function createOverlay(
  base: string,
  baseFormat: string,
  overlay: string,
  diskGiB: number,
  signal?: AbortSignal,
): Promise<void> {
  const abs = resolve(base);
  const wanted = diskGiB * 1024 ** 3;
  const size = (await virtualSize(abs, baseFormat, signal)) < wanted ? wanted : undefined;
  await runTool("qemu-img", overlayArgs(abs, baseFormat, overlay, size), { signal });
}

export async function removeOverlay(overlay: string): Promise<void> {
  await rm(overlay, { force: true });
}
