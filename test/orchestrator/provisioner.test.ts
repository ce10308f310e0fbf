import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { createVmProvisioner, NotServedError } from "../../src/orchestrator/provisioner.js";
import { loadCatalog } from "../../src/vm/catalog.js";
import { ImageMissingError } from "../../src/vm/errors.js";
import { DEFAULT_EGRESS } from "../support/orchestrators.js";

describe("provisioner", () => {
  it("serves every catalog label and image name, plus the explicit host labels", async () => {
    const catalog = await loadCatalog();
    const p = createVmProvisioner({
      egress: DEFAULT_EGRESS,
      catalog,
      imagesDir: "/nonexistent",
      runDir: "/nonexistent",
      hostLabels: ["local:host"],
    });
    for (const l of ["test", "ubuntu-latest", "ubuntu-24.04", "omnios-r151054", "local:host"])
      assert.ok(p.labels.includes(l), l);
    assert.deepEqual(await p.resolve("local:host"), { kind: "host", label: "local:host" });
  });

  it("refuses a label no image serves, naming the labels it does serve", async () => {
    const p = createVmProvisioner({
      egress: DEFAULT_EGRESS,
      catalog: await loadCatalog(),
      imagesDir: "/nonexistent",
      runDir: "/nonexistent",
      hostLabels: ["local:host"],
    });
    await assert.rejects(
      p.resolve("solaris-11"),
      (e: unknown) =>
        e instanceof NotServedError &&
        /"solaris-11"/.test(e.message) &&
        /local:host/.test(e.message) &&
        /ubuntu-latest/.test(e.message),
    );
  });

  it("serves only the configured labels when some are given", async () => {
    const p = createVmProvisioner({
      egress: DEFAULT_EGRESS,
      catalog: await loadCatalog(),
      imagesDir: "/nonexistent",
      runDir: "/nonexistent",
      labels: ["test"],
    });
    assert.deepEqual(p.labels, ["test"]);
    await assert.rejects(p.resolve("ubuntu-latest"), NotServedError);
  });

  it("names the command that fetches a served image that is not on this host", async () => {
    const p = createVmProvisioner({
      egress: DEFAULT_EGRESS,
      catalog: await loadCatalog(),
      imagesDir: "/nonexistent",
      runDir: "/nonexistent",
    });
    await assert.rejects(
      p.resolve("ubuntu-latest"),
      (e: unknown) => e instanceof ImageMissingError && /gnomon images pull ubuntu-24\.04/.test(e.message),
    );
  });
});
