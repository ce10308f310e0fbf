// What a forge runner holds right now, on disk, for the process that follows it: if this one dies
// mid-job (a crash, SIGKILL, a power cut), its successor ends those jobs on the forge at once
// instead of leaving them "running" there until the forge gives up on them. Written whole (temp
// file + rename, mode 0600) after every change (changes that come while a write is queued share
// it), so a crash never leaves half a file.
import { randomUUID } from "node:crypto";
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import type { Logger } from "../telemetry/log.js";

export class InFlightFile<T> {
  readonly #path: string;
  readonly #log: Logger;
  readonly #isEntry: (x: unknown) => x is T;
  readonly #keyOf: (entry: T) => string;
  readonly #entries = new Map<string, T>();
  #writing: Promise<void> = Promise.resolve();
  /** A write is queued that has not started: it will see every change made until it does. */
  #queued = false;

  /** `isEntry` keeps what a damaged or older file holds out; `keyOf` names an entry for remove(). */
  constructor(path: string, isEntry: (x: unknown) => x is T, keyOf: (entry: T) => string, log: Logger) {
    this.#path = path;
    this.#isEntry = isEntry;
    this.#keyOf = keyOf;
    this.#log = log;
  }

  /** What a previous process left: what it held when it died. Empty when there is no file. */
  async leftovers(): Promise<T[]> {
    let text: string;
    try {
      text = await readFile(this.#path, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
      throw err;
    }
    try {
      const parsed = JSON.parse(text) as { held?: unknown };
      return (Array.isArray(parsed.held) ? parsed.held : []).filter(this.#isEntry);
    } catch (err) {
      this.#log.warn({ err, file: this.#path }, "the file of held jobs is damaged; ignoring it");
      return [];
    }
  }

  add(entry: T): Promise<void> {
    this.#entries.set(this.#keyOf(entry), entry);
    return this.#save();
  }

  remove(key: string): Promise<void> {
    if (!this.#entries.delete(key)) return this.#writing;
    return this.#save();
  }

  /** Forgets what is on disk beyond what this process holds (once the leftovers were dealt with). */
  clear(): Promise<void> {
    return this.#save();
  }

  /** Settles when every change made so far is on disk. */
  settled(): Promise<void> {
    return this.#writing;
  }

  /** Writes the entries as they are when the write starts; changes made before then share it. */
  #save(): Promise<void> {
    if (this.#queued) return this.#writing;
    this.#queued = true;
    this.#writing = this.#writing
      .then(async () => {
        this.#queued = false;
        const body = `${JSON.stringify({ held: [...this.#entries.values()] }, null, 1)}\n`;
        await mkdir(dirname(this.#path), { recursive: true });
        const tmp = `${this.#path}.${randomUUID().slice(0, 8)}.tmp`;
        await writeFile(tmp, body, { mode: 0o600 });
        await rename(tmp, this.#path);
      })
      .catch((err: unknown) => this.#log.warn({ err, file: this.#path }, "could not save the held jobs"));
    return this.#writing;
  }
}
