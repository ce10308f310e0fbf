// The debian-12 recipe image end to end: built here from Debian packages (once; reused while the
// recipe is unchanged), listed, and booted twice through `gnomon exec` by a workflow that checks
// what a job needs of a real cloud-init guest: Gnomon's NoCloud seed made the user with the job's
// key, passwordless sudo and the hostname; git is there; the SSH host key (and machine-id) were
// made at this boot and differ between two VMs; steps run over OpenSSH with set -e semantics and
// pass GITHUB_ENV and GITHUB_OUTPUT on; actions/checkout brings the workspace with its history.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { runGnomon } from "../support/cli.js";
import { qemuPids } from "../support/qemu-processes.js";
import { recipeImage, TEST_IMAGES_DIR } from "../support/test-image.js";

const WORKFLOW = `name: cloud guest
on: push
jobs:
  guest:
    # Two VMs, one after the other (exec runs jobs in turn): their host keys and machine-ids must differ.
    strategy: { matrix: { vm: [a, b] } }
    runs-on: debian-12
    steps:
      - name: this boot made the host key
        run: |
          ls /etc/ssh/ssh_host_*
          booted=$(( $(date +%s) - $(cut -d. -f1 /proc/uptime) ))
          made=$(stat -c %Y /etc/ssh/ssh_host_ed25519_key.pub)
          test "$made" -ge "$((booted - 2))"
          key=$(ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub | cut -d' ' -f2)
          echo "identity of \${{ matrix.vm }}: host key $key machine-id $(cat /etc/machine-id)"
      - name: the seed's user, key, sudo and hostname; git; OpenSSH
        run: |
          test "$(id -un)" = runner
          test "$(grep -c . ~/.ssh/authorized_keys)" = 1
          grep -q '^ssh-ed25519 ' ~/.ssh/authorized_keys
          sudo -n true
          git --version
          h=$(hostname)
          case "$h" in gnomon-*) ;; *) echo "hostname $h is not the seed's"; exit 1 ;; esac
          test "$(cat /etc/hostname)" = "$h"
          getent hosts "$h"
          test -n "$SSH_CONNECTION"
          pgrep -x sshd >/dev/null
          echo "checked user=$(id -un) host=$h"
      - id: sete
        continue-on-error: true
        run: |
          echo "before the failing line"
          false
          echo "after the failing line"
      - run: test "\${{ steps.sete.outcome }}" = failure
      - id: files
        run: |
          echo "FROM_ENV=env value" >> "$GITHUB_ENV"
          echo "out=output value" >> "$GITHUB_OUTPUT"
      - run: |
          test "$FROM_ENV" = "env value"
          test "\${{ steps.files.outputs.out }}" = "output value"
          echo "env and output passed on"
      - uses: actions/checkout@v4
        with: { fetch-depth: 0 }
      - run: |
          test "$(git log --format=%s | paste -sd,)" = "second,first"
          test "$(cat marker.txt)" = "from the workspace"
          echo "checked out with history"
`;

describe("the debian-12 image", () => {
  it("is built here, listed, and runs a job as a downloaded Debian cloud image does", async (t) => {
    await recipeImage("debian-12");
    const data = await mkdtemp(join(tmpdir(), "gnomon-debian-12-"));
    t.after(() => rm(data, { recursive: true, force: true }));
    const env = { GNOMON_IMAGES_DIR: TEST_IMAGES_DIR, GNOMON_DATA_DIR: data };

    const list = await runGnomon(["images", "list"], { env });
    assert.match(list.stdout, /^debian-12\s+debian-12, debian-latest\s+linux\s+recipe\s+yes\s+\d+ MiB/m);

    const ws = join(data, "ws");
    await mkdir(join(ws, ".github", "workflows"), { recursive: true });
    await writeFile(join(ws, ".github", "workflows", "guest.yml"), WORKFLOW);
    const git = (...args: string[]) =>
      execFileSync("git", ["-c", "user.name=gnomon", "-c", "user.email=gnomon@example.com", ...args], { cwd: ws });
    git("init", "-q");
    git("commit", "-q", "--allow-empty", "-m", "first");
    await writeFile(join(ws, "marker.txt"), "from the workspace\n");
    git("add", ".");
    git("commit", "-q", "-m", "second");

    const started = Date.now();
    const r = await runGnomon(["exec", "--workspace", ws, "--label", "debian-12=debian-12"], {
      cwd: ws,
      env,
      timeoutMs: 15 * 60_000,
    });
    t.diagnostic(`gnomon exec of two debian-12 jobs took ${((Date.now() - started) / 1000).toFixed(1)} s`);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const count = (re: RegExp) => r.stdout.match(new RegExp(re, "g"))?.length ?? 0;
    assert.equal(count(/│ checked user=runner host=gnomon-/), 2);
    assert.equal(count(/│ before the failing line/), 2);
    assert.equal(count(/│ after the failing line/), 0);
    assert.equal(count(/│ env and output passed on/), 2);
    assert.equal(count(/│ checked out with history/), 2);
    const ids = [...r.stdout.matchAll(/│ identity of (a|b): host key (SHA256:\S+) machine-id ([0-9a-f]{32})$/gm)];
    assert.deepEqual(ids.map((m) => m[1]).sort(), ["a", "b"]);
    assert.notEqual(ids[0]![2], ids[1]![2], "each VM made its own SSH host key");
    assert.notEqual(ids[0]![3], ids[1]![3], "each VM made its own machine-id");
    assert.match(r.stdout, /2 jobs: 2 succeeded, 0 failed, 0 cancelled, 0 skipped/);
    assert.deepEqual(qemuPids(data), [], "no VM of this test is left");
  });
});
