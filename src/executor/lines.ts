// Splits a process's output bytes into lines without their endings ("\n" or "\r\n"), decoding
// UTF-8 across chunk boundaries. A line longer than MAX_LINE_CHARS (a step that prints a binary
// file, a minified bundle) is cut into pieces of that size, so output without newlines can neither
// grow without bound in memory nor make the scan quadratic.
import { StringDecoder } from "node:string_decoder";

export const MAX_LINE_CHARS = 64 * 1024;

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
      this.#onLine(this.#pending.slice(0, this.#max));
      this.#pending = this.#pending.slice(this.#max);
    }
  }

  #emitLong(line: string): void {
    let rest = line;
    // A "\r" ending is not part of the line: one character over with it is still whole.
    while (rest.length > this.#max && !(rest.length === this.#max + 1 && rest.endsWith("\r"))) {
      this.#onLine(rest.slice(0, this.#max));
      rest = rest.slice(this.#max);
    }
    this.#emit(rest);
  }

  #emit(line: string): void {
    this.#onLine(line.endsWith("\r") ? line.slice(0, -1) : line);
  }
}
