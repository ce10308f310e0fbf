// Runner labels: forgejo-runner's name[:scheme[:argument]] with gnomon's vm and host schemes.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { LabelError } from "../../../src/forge/forgejo/errors.js";
import { labelForJob, parseLabel, parseLabels, splitLabelList } from "../../../src/forge/forgejo/labels.js";

describe("Forgejo runner labels", () => {
  it("a bare name runs in a VM of the catalog entry with that name", () => {
    assert.deepEqual(parseLabel("debian-12"), {
      name: "debian-12",
      scheme: "vm",
      runsOn: "debian-12",
      text: "debian-12",
    });
  });

  it("name:vm:image maps the label to another catalog entry, // prefix accepted", () => {
    assert.equal(parseLabel("ubuntu-latest:vm:debian-12").runsOn, "debian-12");
    assert.equal(parseLabel("ubuntu-latest:vm://debian-12").runsOn, "debian-12");
    assert.equal(parseLabel("omnios:vm").runsOn, "omnios");
  });

  it("name:host names the host queue and takes no argument", () => {
    assert.equal(parseLabel("self-hosted:host").runsOn, "self-hosted:host");
    assert.throws(() => parseLabel("self-hosted:host:x"), LabelError);
  });

  it("refuses forgejo-runner's container schemes with a sentence saying why", () => {
    assert.throws(() => parseLabel("ubuntu-latest:docker://node:20"), /gnomon runs every job in a VM/);
    assert.throws(() => parseLabel("x:lxc://debian:bookworm"), /lxc/);
    assert.throws(() => parseLabel("x:qemu"), /unknown scheme "qemu"/);
  });

  it("refuses empty names, spaces around a label and repeated names", () => {
    assert.throws(() => parseLabel(":vm:x"), /empty name/);
    assert.throws(() => parseLabel(" a"), /spaces/);
    assert.throws(() => parseLabels(["a", "a:vm:b"]), /repeats the name "a"/);
  });

  it("splits a comma list as typed on the command line", () => {
    assert.deepEqual(splitLabelList(" a, b:vm:c ,,"), ["a", "b:vm:c"]);
  });

  it("picks the first runs-on entry that is one of the runner's labels", () => {
    const labels = parseLabels(["linux:vm:debian-12", "big"]);
    assert.equal(labelForJob(["big", "linux"], labels)?.runsOn, "big");
    assert.equal(labelForJob(["nope"], labels), undefined);
  });
});
