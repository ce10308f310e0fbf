// Splits a process's output bytes into lines without their endings ("\n" or "\r\n"), decoding
// UTF-8 across chunk boundaries. A line longer than MAX_LINE_CHARS (a step that prints a binary
// file, a minified bundle) is cut into pieces, so output without newlines can neither grow without
// bound in memory nor make the scan quadratic. A piece ends after the last blank in its second half
// where there is one: secret masking works per line, and a token is never cut in two that way.
// Only a run of over half a MiB without any blank is cut hard.
import { StringDecoder } from "node:string_decoder";

export const MAX_LINE_CHARS = 1024 * 1024;

export class LineSplitter {
  readonly #onLine: (line: string) => void;
  readonly #decoder = new StringDecoder("utf8");
  readonly #max: number;
  #pending = "";

  constructor(onLine: (line: string) => void, maxLineChars = MAX_LINE_CHARS) {
    this.#onLine = onLine;
    this.#max = maxLineChars;
  }

  push(chunk: Buffer): void {
    this.#take(this.#decoder.write(chunk));
  }

  /** The end of the stream: what is left is the last line. */
  end(): void {
    this.#take(this.#decoder.end());
    if (this.#pending.length > 0) this.#emit(this.#pending);
    this.#pending = "";
  }

  #take(text: string): void {
    if (text.length === 0) return;
    // Only the new text can hold a newline: the pending part was searched before.
    let start = 0;
    for (let nl = text.indexOf("\n"); nl >= 0; nl = text.indexOf("\n", start)) {
      const line = this.#pending + text.slice(start, nl);
      this.#pending = "";
      this.#emitLong(line);
      start = nl + 1;
    }
    this.#pending += text.slice(start);
    while (this.#pending.length > this.#max) {
      const cut = this.#cutAt(this.#pending);
      this.#onLine(this.#pending.slice(0, cut));
      this.#pending = this.#pending.slice(cut);
    }
  }

  #emitLong(line: string): void {
    let rest = line;
    // A "\r" ending is not part of the line: one character over with it is still whole.
    while (rest.length > this.#max && !(rest.length === this.#max + 1 && rest.endsWith("\r"))) {
      const cut = this.#cutAt(rest);
      this.#onLine(rest.slice(0, cut));
      rest = rest.slice(cut);
    }
    this.#emit(rest);
  }

  /** Where to cut a too-long text: after the last blank in [max/2, max), else at max. */
  #cutAt(text: string): number {
    const half = Math.floor(this.#max / 2);
    const blank = Math.max(text.lastIndexOf(" ", this.#max - 1), text.lastIndexOf("\t", this.#max - 1));
    return blank >= half ? blank + 1 : this.#max;
  }

  #emit(line: string): void {
    this.#onLine(line.endsWith("\r") ? line.slice(0, -1) : line);
  }
}
