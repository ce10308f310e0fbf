// The reaper deletes the files of an orphan VM only inside this host's VM run folder: a VM record
// whose paths lead elsewhere (a crafted row, a symbolic link out of the folder) is refused, said
// once with the fix, and kept; a record inside the folder is cleaned up as before.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from "node:fs";
import { rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it, type TestContext } from "node:test";
import { Reaper } from "../../src/orchestrator/reaper.js";
import { MemoryBus } from "../../src/queue/memory.js";
import { Store } from "../../src/store/store.js";
import type { NewVm } from "../../src/store/vms.js";
import { createMetrics } from "../../src/telemetry/metrics.js";
import { capturedLog } from "../support/captured-log.js";
import { freshPgliteDataDir } from "../support/db.js";
import { sampleJobRequest } from "../support/samples.js";

const HOST = "reaper-test-host";

async function setUp(t: TestContext) {
  const store = new Store({ dataDir: await freshPgliteDataDir(t) });
  await store.start();
  t.after(() => store.stop(AbortSignal.timeout(10_000)));
  const root = mkdtempSync(join(tmpdir(), "gnomon-reaper-"));
  t.after(() => rm(root, { recursive: true, force: true }));
  const runDir = join(root, "data", "vms");
  mkdirSync(runDir, { recursive: true });
  const captured = capturedLog();
  const reaper = new Reaper({
    store,
    bus: new MemoryBus(),
    host: HOST,
    self: "reaper-test",
    metrics: createMetrics({ defaultMetrics: false }),
    log: captured.log,
    intervalMs: 60_000,
    isRunningHere: () => false,
    runDir,
  });
  /** An orphan VM record (its job has no lease) with the given paths. */
  const orphan = async (paths: Pick<NewVm, "overlayPath" | "seedPath">, id = randomUUID()): Promise<string> => {
    const { job } = await store.jobs.insert(sampleJobRequest());
    await store.vms.record({ id, jobId: job.id, owner: "orch-dead", host: HOST, ...paths });
    return id;
  };
  /** A folder with a file in it, standing for something that is not gnomon's to delete. */
  const precious = (name: string): string => {
    const dir = join(root, name);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "keep.txt"), "not a VM file\n");
    return dir;
  };
  return { store, reaper, runDir, root, captured, orphan, precious };
}

describe("reaper and the VM files a record names", () => {
  it("deletes an orphan VM's run folder and record when they lie inside the VM run folder", async (t) => {
    const { store, reaper, runDir, orphan } = await setUp(t);
    const id = randomUUID();
    const dir = join(runDir, id);
    mkdirSync(dir);
    writeFileSync(join(dir, "disk.qcow2"), "overlay");
    writeFileSync(join(dir, "seed.iso"), "seed");
    await orphan({ overlayPath: join(dir, "disk.qcow2"), seedPath: join(dir, "seed.iso") }, id);
    assert.equal((await reaper.reapOnce()).vmsKilled, 1);
    assert.equal(existsSync(dir), false);
    assert.equal(await store.vms.get(id), undefined);
  });

  it("refuses a crafted record whose paths lie outside the run folder, keeps it, and says so once", async (t) => {
    const { store, reaper, runDir, captured, orphan, precious } = await setUp(t);
    const victim = precious("elsewhere");
    const outside = await orphan({ overlayPath: join(victim, "disk.qcow2"), seedPath: null });
    const dotdot = precious("data/also-mine");
    const climbing = await orphan({ overlayPath: join(runDir, "..", "also-mine", "disk.qcow2"), seedPath: null });
    const seedVictim = precious("a-seed");
    const inDir = join(runDir, randomUUID());
    mkdirSync(inDir);
    const badSeed = await orphan({ overlayPath: join(inDir, "disk.qcow2"), seedPath: join(seedVictim, "keep.txt") });
    const whole = await orphan({ overlayPath: join(runDir, "disk.qcow2"), seedPath: null });

    assert.equal((await reaper.reapOnce()).vmsKilled, 0);
    await reaper.reapOnce();
    for (const dir of [victim, dotdot, seedVictim]) assert.ok(existsSync(join(dir, "keep.txt")), `${dir} is untouched`);
    assert.ok(existsSync(inDir), "a VM with one path outside is left whole");
    assert.ok(existsSync(runDir), "the run folder itself is never deleted");
    for (const id of [outside, climbing, badSeed, whole]) assert.ok(await store.vms.get(id), "its record is kept");
    assert.equal(captured.count(/^not deleting .* of an orphan VM: .*is not inside this host's VM run folder/), 4);
    assert.match(
      captured.lines.find((l) => l.msg.includes(victim))?.msg ?? "",
      new RegExp(`delete from vms where id = '${outside}'`),
    );
  });

  it("refuses a run folder that is a symbolic link out of the VM run folder", async (t) => {
    const { store, reaper, runDir, orphan, precious } = await setUp(t);
    const victim = precious("linked");
    const id = randomUUID();
    symlinkSync(victim, join(runDir, id));
    await orphan({ overlayPath: join(runDir, id, "disk.qcow2"), seedPath: join(runDir, id, "keep.txt") }, id);
    assert.equal((await reaper.reapOnce()).vmsKilled, 0);
    assert.ok(existsSync(join(victim, "keep.txt")), "the link's target is untouched");
    assert.ok(await store.vms.get(id), "its record is kept");
  });
});
