// The serial console as clean lines in a bounded ring.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { SerialConsole } from "../../src/vm/serial-console.js";

describe("serial console", () => {
  it("splits lines across chunks, strips escapes and carriage returns, and keeps the last ones", () => {
    const seen: string[] = [];
    const c = new SerialConsole(3, (l) => seen.push(l));
    const chunks = [Buffer.from("\x1b[2J\x1b[0;37mSeaBIOS\r\nLinux ver"), Buffer.from("sion 6.1\r\n\r\none\ntwo\nthr")];
    for (const chunk of chunks) c.feed(chunk);
    assert.deepEqual(seen, ["SeaBIOS", "Linux version 6.1", "one", "two"]);
    assert.deepEqual(c.tail(), ["one", "two", "thr"], "the ring holds three lines, the unterminated one last");
    c.end();
    assert.deepEqual(seen.at(-1), "thr");
  });

  it("decodes UTF-8 split between chunks", () => {
    const c = new SerialConsole(5);
    const bytes = Buffer.from("grüße\n");
    c.feed(bytes.subarray(0, 3));
    c.feed(bytes.subarray(3));
    assert.deepEqual(c.tail(), ["grüße"]);
  });
});
