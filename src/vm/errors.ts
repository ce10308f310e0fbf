// The VM layer's errors: one class per decision a caller makes (fix the host, fail the job, retry),
// each with a stable code, the value at fault, and a message that says what to do next.
// Never a plain Error thrown from src/vm, never a string.

/** What the boot was waiting for when it gave up; the names match ProvisioningPhase in the contract. */
export type BootPhase = "booting" | "kernel" | "network" | "ssh";

const PHASE_TEXT: Readonly<Record<BootPhase, { stuck: string; fix: string }>> = {
  booting: {
    stuck: "no serial output",
    fix: "the firmware and boot loader printed nothing: check the image's format and boot method in the catalog, and that its console is on the first serial port",
  },
  kernel: {
    stuck: "kernel booted but no network",
    fix: "the guest never answered on its network: check that the image brings up a virtio-net NIC by DHCP",
  },
  network: {
    stuck: "SSH refused",
    fix: "the guest's network is up but nothing accepts connections on port 22: check that the image starts an SSH server",
  },
  ssh: {
    stuck: "auth failed",
    fix: "the SSH server refused the job's key: check the catalog's login user and that the image's cloud-init reads a NoCloud seed",
  },
};

export function describePhase(phase: BootPhase): string {
  return PHASE_TEXT[phase].stuck;
}

function serialBlock(lines: readonly string[]): string {
  return lines.length === 0
    ? "The serial console stayed empty."
    : `Last serial console lines:\n${lines.map((l) => `  | ${l}`).join("\n")}`;
}

export class BootTimeoutError extends Error {
  override readonly name = "BootTimeoutError";
  readonly code = "vm.boot-timeout";
  constructor(
    readonly label: string,
    readonly image: string,
    readonly phase: BootPhase,
    readonly afterMs: number,
    readonly serialTail: readonly string[],
    options?: ErrorOptions,
  ) {
    super(
      `The VM for runs-on "${label}" (image ${image}) did not boot within ${afterMs / 1000} s: stuck at ${PHASE_TEXT[phase].stuck}; ` +
        `${PHASE_TEXT[phase].fix}. If the image is only slow, raise bootTimeout of "${image}" in the image catalog.\n` +
        serialBlock(serialTail),
      options,
    );
  }
}

/** QEMU ended before the guest was ready: bad arguments, a broken image, or a guest that powered off. */
export class QemuExitedError extends Error {
  override readonly name = "QemuExitedError";
  readonly code = "vm.qemu-exited";
  constructor(
    readonly label: string,
    readonly image: string,
    readonly phase: BootPhase,
    readonly exitCode: number | null,
    readonly stderr: string,
    readonly serialTail: readonly string[],
    options?: ErrorOptions,
  ) {
    const why = stderr.trim() ? ` QEMU said: ${stderr.trim().split("\n").slice(-3).join(" / ")}.` : "";
    super(
      `QEMU for runs-on "${label}" (image ${image}) exited with code ${exitCode} while the guest was at ${PHASE_TEXT[phase].stuck}.${why} ` +
        `Check the image file and its catalog entry (format, boot method).\n${serialBlock(serialTail)}`,
      options,
    );
  }
}

export class UnknownLabelError extends Error {
  override readonly name = "UnknownLabelError";
  readonly code = "vm.unknown-label";
  constructor(
    readonly label: string,
    readonly known: readonly string[],
    readonly catalogPath: string,
  ) {
    super(
      `No image in the catalog serves runs-on "${label}". Known labels: ${known.join(", ") || "(none)"}. ` +
        `Add the label to an image in ${catalogPath} or change runs-on.`,
    );
  }
}

export class ImageMissingError extends Error {
  override readonly name: string = "ImageMissingError";
  readonly code: string = "vm.image-missing";
  constructor(
    readonly image: string,
    readonly path: string,
    readonly fix: string,
  ) {
    super(`The disk image of "${image}" is not on this host (${path}); ${fix}.`);
  }
}

/**
 * A recipe image built from another recipe than the catalog's now (gnomon was upgraded, or the
 * recipe edited): it counts as missing, and the message says to rebuild it.
 */
export class StaleImageError extends ImageMissingError {
  override readonly name = "StaleImageError";
  override readonly code = "vm.image-stale";
  constructor(
    image: string,
    path: string,
    readonly builtDigest: string,
    readonly recipeDigest: string,
  ) {
    super(image, path, `rebuild it with \`gnomon images build ${image}\``);
    this.message =
      `The disk image of "${image}" on this host (${path}) was built from another recipe ` +
      `(${builtDigest.slice(0, 12)}; the recipe is now ${recipeDigest.slice(0, 12)}); rebuild it with \`gnomon images build ${image}\`.`;
  }
}

export class CatalogError extends Error {
  override readonly name = "CatalogError";
  readonly code = "vm.catalog-invalid";
  constructor(
    readonly path: string,
    readonly problems: readonly string[],
  ) {
    super(
      `The image catalog ${path} is invalid:\n  ${problems.join("\n  ")}\nFix it; docs/images.md describes every field.`,
    );
  }
}

export class ToolMissingError extends Error {
  override readonly name = "ToolMissingError";
  readonly code = "vm.tool-missing";
  constructor(
    readonly program: string,
    readonly debianPackage: string | undefined,
    options?: ErrorOptions,
  ) {
    super(
      `The program ${program} is not installed on this host; ` +
        (debianPackage ? `install it with \`apt-get install ${debianPackage}\`` : "install it") +
        " (docs/images.md lists every host package).",
      options,
    );
  }
}

export class ToolFailedError extends Error {
  override readonly name = "ToolFailedError";
  readonly code = "vm.tool-failed";
  constructor(
    readonly program: string,
    readonly args: readonly string[],
    readonly exitCode: number,
    readonly signal: string | null,
    readonly output: string,
  ) {
    const tail = output.trim().split("\n").slice(-5).join("\n  ");
    super(
      `${program} ${args.join(" ")} failed (${signal ? `signal ${signal}` : `exit ${exitCode}`})${tail ? `:\n  ${tail}` : ""}`,
    );
  }
}
