// The guest's serial console as lines: feeds raw bytes from QEMU, strips terminal escapes and
// carriage returns, keeps the last lines in a ring buffer for boot-failure messages, and passes each
// line to a listener (the job log). Pure state; no streams of its own.
import { StringDecoder } from "node:string_decoder";

// CSI/OSC sequences and lone control characters other than tab.
const ESCAPES = /\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)|\x1b[@-Z\\-_]|[\x00-\x08\x0b-\x1f\x7f]/g;

export class SerialConsole {
  readonly #ring: string[] = [];
  readonly #decoder = new StringDecoder("utf8");
  #partial = "";

  constructor(
    readonly capacity: number,
    private readonly onLine?: (line: string) => void,
  ) {}

  feed(chunk: Buffer): void {
    const text = this.#partial + this.#decoder.write(chunk);
    const lines = text.split("\n");
    this.#partial = lines.pop() ?? "";
    for (const raw of lines) this.#push(raw);
  }

  /** Flushes a last unterminated line (when QEMU has exited). */
  end(): void {
    const rest = this.#partial + this.#decoder.end();
    this.#partial = "";
    if (rest) this.#push(rest);
  }

  /** The last `n` non-empty lines, including an unterminated one. */
  tail(n = this.capacity): string[] {
    const partial = clean(this.#partial);
    const all = partial ? [...this.#ring, partial] : [...this.#ring];
    return all.slice(-n);
  }

  #push(raw: string): void {
    const line = clean(raw);
    if (!line) return;
    this.#ring.push(line);
    if (this.#ring.length > this.capacity) this.#ring.shift();
    this.onLine?.(line);
  }
}

function clean(raw: string): string {
  return raw.replace(ESCAPES, "").trimEnd();
}
