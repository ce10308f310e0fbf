// Pure: the byte ranges of an upload that arrived whole. Chunks come in any order, in parallel,
// and again after a retry; an entry may be committed only when they cover [0, size) exactly.

export class ByteRanges {
  /** Disjoint, sorted, non-adjacent [start, end) pairs. */
  #spans: [number, number][] = [];

  /** Records [start, end] (inclusive, as Content-Range writes it). */
  add(start: number, endInclusive: number): void {
    let s = start;
    let e = endInclusive + 1;
    const kept: [number, number][] = [];
    for (const [a, b] of this.#spans) {
      if (b < s || a > e) kept.push([a, b]);
      else {
        s = Math.min(s, a);
        e = Math.max(e, b);
      }
    }
    kept.push([s, e]);
    kept.sort((x, y) => x[0] - y[0]);
    this.#spans = kept;
  }

  /** Forgets [start, end] (inclusive): bytes there can no longer be trusted. */
  remove(start: number, endInclusive: number): void {
    const s = start;
    const e = endInclusive + 1;
    const kept: [number, number][] = [];
    for (const [a, b] of this.#spans) {
      if (b <= s || a >= e) kept.push([a, b]);
      else {
        if (a < s) kept.push([a, s]);
        if (b > e) kept.push([e, b]);
      }
    }
    this.#spans = kept;
  }

  /** One past the last byte received (0 when nothing arrived). */
  get end(): number {
    return this.#spans.at(-1)?.[1] ?? 0;
  }

  /** Bytes received in all. */
  get bytes(): number {
    return this.#spans.reduce((n, [a, b]) => n + (b - a), 0);
  }

  /** True when the bytes received are exactly [0, size). */
  coversExactly(size: number): boolean {
    if (size === 0) return this.#spans.length === 0;
    const only = this.#spans[0];
    return this.#spans.length === 1 && only !== undefined && only[0] === 0 && only[1] === size;
  }

  /** The first gap below `size`, for the message of a refused commit. */
  firstGap(size: number): { start: number; end: number } | undefined {
    let at = 0;
    for (const [a, b] of this.#spans) {
      if (a > at) return { start: at, end: Math.min(a, size) };
      at = Math.max(at, b);
    }
    return at < size ? { start: at, end: size } : undefined;
  }
}
