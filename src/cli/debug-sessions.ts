// `gnomon debug-sessions`: the audit trail of debug SSH logins (docs/debug-ssh.md): who logged into
// which held job, from where, when, for how long and how many bytes, newest first. It reads the
// store only (PostgreSQL, or the embedded database when no gnomon runs on this data directory).
import type { DebugSession } from "../store/debug-sessions.js";
import { type Command, UsageError } from "./command.js";
import { EXIT } from "./exit-codes.js";
import { createStore } from "./infrastructure.js";

export const debugSessionsCommand: Command = {
  name: "debug-sessions",
  summary: "list debug SSH logins into held jobs (who, from where, when, bytes)",
  usage: `Usage: gnomon debug-sessions [--job ID] [--limit N] [--json]

Lists the debug SSH sessions recorded in the store, newest first: the job, the actor who logged in,
the key they used, where from, when it started and ended, and the bytes each way. With the embedded
database, run it while no gnomon uses the same data directory.`,
  options: {
    job: { type: "string" },
    limit: { type: "string" },
    json: { type: "boolean" },
  },
  async run(args, ctx) {
    const job = args.values["job"] as string | undefined;
    if (job !== undefined && !/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(job))
      throw new UsageError(
        `--job ${JSON.stringify(job)} is not a job id; give the job's uuid, as the job log shows it`,
      );
    const limitText = (args.values["limit"] as string | undefined) ?? "50";
    if (!/^\d{1,5}$/.test(limitText) || Number(limitText) < 1)
      throw new UsageError(`--limit ${JSON.stringify(limitText)} is not a number from 1 to 99999`);
    const store = createStore(args.config(), args.logger());
    await store.start();
    try {
      const sessions = await store.debugSessions.list({ jobId: job?.toLowerCase(), limit: Number(limitText) });
      if (args.values["json"]) {
        for (const s of sessions) ctx.stdout.write(`${JSON.stringify(s)}\n`);
      } else ctx.stdout.write(renderTable(sessions));
    } finally {
      await store.stop(AbortSignal.timeout(10_000));
    }
    return EXIT.ok;
  },
};

/** A fixed-width table, one session a row; "(none)" when there is nothing to show. */
export function renderTable(sessions: readonly DebugSession[]): string {
  if (sessions.length === 0) return "no debug SSH sessions recorded\n";
  const rows = [
    ["STARTED", "ENDED", "JOB", "ACTOR", "SOURCE", "IN", "OUT", "KEY", "END"],
    ...sessions.map((s) => [
      s.startedAt.toISOString(),
      s.endedAt ? s.endedAt.toISOString() : "(open)",
      s.jobId,
      s.actor,
      s.source,
      String(s.bytesIn),
      String(s.bytesOut),
      s.keyFingerprint,
      s.endReason ?? "",
    ]),
  ];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => `${r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join("  ")}\n`).join("");
}
