// Errors of getting images onto this host: a recipe that cannot be built, a download that failed
// or does not match its checksum. Each has a stable code and a message that says what to do next.

export class RecipeError extends Error {
  override readonly name = "RecipeError";
  readonly code = "vm.recipe-failed";
  constructor(
    readonly recipe: string,
    message: string,
    options?: ErrorOptions,
  ) {
    super(`Recipe "${recipe}": ${message}`, options);
  }
}

export class ChecksumMismatchError extends Error {
  override readonly name = "ChecksumMismatchError";
  readonly code = "vm.checksum-mismatch";
  constructor(
    readonly url: string,
    readonly expected: string,
    readonly actual: string,
  ) {
    super(
      `The download of ${url} has checksum ${actual}, but the catalog expects ${expected}. ` +
        `The partial file was deleted; if the image was re-published, update its checksum in the catalog, then pull again.`,
    );
  }
}

export class DownloadError extends Error {
  override readonly name = "DownloadError";
  readonly code = "vm.download-failed";
  constructor(
    readonly url: string,
    detail: string,
    options?: ErrorOptions,
  ) {
    super(`Downloading ${url} failed: ${detail}. Run the same pull again: it resumes where it stopped.`, options);
  }
}
