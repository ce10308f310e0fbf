// Pure writer of "newc" cpio archives, the format the Linux kernel unpacks as an initramfs. Owners
// are always root and device nodes are plain header fields, so building one needs no privileges.

export type CpioEntry =
  | { readonly kind: "dir"; readonly path: string; readonly mode?: number }
  | { readonly kind: "file"; readonly path: string; readonly data: Uint8Array; readonly mode?: number }
  | { readonly kind: "symlink"; readonly path: string; readonly target: string }
  | {
      readonly kind: "chardev";
      readonly path: string;
      readonly major: number;
      readonly minor: number;
      readonly mode?: number;
    };

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;

function hex8(n: number): string {
  return n.toString(16).padStart(8, "0");
}

function pad4(n: number): number {
  return (4 - (n % 4)) % 4;
}

function record(ino: number, mode: number, data: Uint8Array, name: string, rdev: [number, number] = [0, 0]): Buffer {
  const nameBytes = Buffer.from(`${name}\0`, "utf8");
  const header = Buffer.from(
    `070701${hex8(ino)}${hex8(mode)}${hex8(0)}${hex8(0)}${hex8(mode & S_IFDIR ? 2 : 1)}${hex8(0)}` +
      `${hex8(data.length)}${hex8(0)}${hex8(0)}${hex8(rdev[0])}${hex8(rdev[1])}${hex8(nameBytes.length)}${hex8(0)}`,
    "ascii",
  );
  return Buffer.concat([
    header,
    nameBytes,
    Buffer.alloc(pad4(header.length + nameBytes.length)),
    data,
    Buffer.alloc(pad4(data.length)),
  ]);
}

/** The archive for `entries`, in the order given (a directory must come before what it holds). */
export function cpioArchive(entries: readonly CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  entries.forEach((e, i) => {
    const ino = i + 1;
    const name = e.path.replace(/^\/+/, "");
    switch (e.kind) {
      case "dir":
        parts.push(record(ino, S_IFDIR | (e.mode ?? 0o755), new Uint8Array(0), name));
        break;
      case "file":
        parts.push(record(ino, S_IFREG | (e.mode ?? 0o644), e.data, name));
        break;
      case "symlink":
        parts.push(record(ino, S_IFLNK | 0o777, Buffer.from(e.target, "utf8"), name));
        break;
      case "chardev":
        parts.push(record(ino, S_IFCHR | (e.mode ?? 0o600), new Uint8Array(0), name, [e.major, e.minor]));
        break;
    }
  });
  parts.push(record(0, 0, new Uint8Array(0), "TRAILER!!!"));
  return Buffer.concat(parts);
}
