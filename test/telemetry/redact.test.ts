// URLs in logs and messages: no password, no signature in a query, whatever the scheme.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { redactUrl } from "../../src/telemetry/redact.js";

describe("redactUrl", () => {
  it("replaces a password and keeps the user, host, port and path", () => {
    assert.equal(redactUrl("amqp://gnomon:s3cret@mq.example:5672/prod"), "amqp://gnomon:***@mq.example:5672/prod");
    assert.equal(redactUrl("postgres://postgres@127.0.0.1:5432/test"), "postgres://postgres@127.0.0.1:5432/test");
  });

  it("drops the query and fragment, where signed URLs and some database URLs keep their secrets", () => {
    assert.equal(
      redactUrl(new URL("https://blob.example/logs/1.log?sv=2020&sig=abc%2Bdef#x")),
      "https://blob.example/logs/1.log",
    );
    assert.equal(redactUrl("postgres://db.example/gnomon?password=hunter2"), "postgres://db.example/gnomon");
  });

  it("prints nothing of a URL it cannot parse", () => {
    assert.equal(redactUrl("amqp://user:pa ss@/"), "(a URL that cannot be parsed)");
  });
});
