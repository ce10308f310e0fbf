import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { describe, it } from "node:test";
import { decodeCancel, decodeJobEvent, decodeJobRequest, encode } from "../../src/contract/codec.js";
import { sampleJobRequest } from "../support/samples.js";

describe("contract codec", () => {
  it("round-trips a JobRequest with template tokens intact", () => {
    const req = sampleJobRequest();
    const back = decodeJobRequest(encode(req));
    assert.ok(back.ok);
    assert.deepEqual(back.value, req);
  });

  it("refuses an unknown version with a reason that says what to do", () => {
    const req = { ...sampleJobRequest(), v: 2 };
    const back = decodeJobRequest(JSON.stringify(req));
    assert.equal(back.ok, false);
    assert.match(!back.ok ? back.reason : "", /version 2 is not supported.*same gnomon version/);
  });

  it("refuses an invalid message naming the field", () => {
    const req = { ...sampleJobRequest(), runsOn: "" };
    const back = decodeJobRequest(JSON.stringify(req));
    assert.equal(back.ok, false);
    assert.match(!back.ok ? back.reason : "", /runsOn/);
  });

  it("refuses bytes that are not JSON", () => {
    const back = decodeJobEvent(Buffer.from("{nope"));
    assert.equal(back.ok, false);
    assert.match(!back.ok ? back.reason : "", /not valid JSON/);
  });

  it("decodes each JobEvent kind and refuses an unknown kind", () => {
    const jobId = randomUUID();
    const ok = decodeJobEvent(
      JSON.stringify({ v: 1, jobId, seq: 3, t: 1, kind: "log", step: 0, stage: "main", lines: [{ t: 1, text: "hi" }] }),
    );
    assert.ok(ok.ok);
    const bad = decodeJobEvent(JSON.stringify({ v: 1, jobId, seq: 3, t: 1, kind: "explode" }));
    assert.equal(bad.ok, false);
  });

  it("decodes a Cancel and refuses one without a reason", () => {
    const jobId = randomUUID();
    assert.ok(decodeCancel(JSON.stringify({ v: 1, jobId, reason: "cancelled on Forgejo", t: 5 })).ok);
    assert.equal(decodeCancel(JSON.stringify({ v: 1, jobId, t: 5 })).ok, false);
  });
});

describe("contract evolution within v1", () => {
  it("reads a message from a newer gnomon that carries a field this one does not know, and drops it", () => {
    const req = { ...sampleJobRequest(), addedLater: { anything: 1 } };
    const back = decodeJobRequest(JSON.stringify(req));
    assert.ok(back.ok, back.ok ? "" : back.reason);
    assert.equal("addedLater" in back.value, false);
  });
});
