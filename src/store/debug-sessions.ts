// Debug SSH sessions: the audit trail of logins into held VMs (migrations/0005_debug_sessions.sql).
// A row is opened when a login succeeds and closed once when it ends. This module only records and
// lists; the debug SSH endpoint decides who gets in.
import type { Queryable } from "./db.js";

export interface DebugSession {
  readonly id: string;
  readonly jobId: string;
  /** The orchestrator that held the job. */
  readonly orchestrator: string;
  /** The forge user who logged in (the job's actor). */
  readonly actor: string;
  /** SHA256 fingerprint of the public key that authenticated the login. */
  readonly keyFingerprint: string;
  /** address:port the login came from. */
  readonly source: string;
  readonly startedAt: Date;
  /** Null while the session lasts (or when its orchestrator died during it). */
  readonly endedAt: Date | null;
  /** Bytes from the user into the VM, and back. */
  readonly bytesIn: number;
  readonly bytesOut: number;
  readonly endReason: string | null;
}

export type NewDebugSession = Pick<
  DebugSession,
  "id" | "jobId" | "orchestrator" | "actor" | "keyFingerprint" | "source"
>;

export interface DebugSessionEnd {
  readonly bytesIn: number;
  readonly bytesOut: number;
  readonly reason: string;
}

const SESSION = `id, job_id as "jobId", orchestrator, actor, key_fingerprint as "keyFingerprint", source,
  started_at as "startedAt", ended_at as "endedAt", bytes_in as "bytesIn", bytes_out as "bytesOut",
  end_reason as "endReason"`;

type Row = Omit<DebugSession, "bytesIn" | "bytesOut"> & { bytesIn: string | number; bytesOut: string | number };

/** bigint columns arrive as strings from pg; a session's bytes fit a double well. */
const toSession = (r: Row): DebugSession => ({ ...r, bytesIn: Number(r.bytesIn), bytesOut: Number(r.bytesOut) });

export async function startDebugSession(q: Queryable, s: NewDebugSession): Promise<void> {
  await q.query(
    `insert into debug_sessions (id, job_id, orchestrator, actor, key_fingerprint, source)
     values ($1, $2, $3, $4, $5, $6)`,
    [s.id, s.jobId, s.orchestrator, s.actor, s.keyFingerprint, s.source],
  );
}

/** Closes a session once; false when it was closed before (or never recorded). */
export async function endDebugSession(q: Queryable, id: string, end: DebugSessionEnd): Promise<boolean> {
  const r = await q.query(
    `update debug_sessions set ended_at = now(), bytes_in = $2, bytes_out = $3, end_reason = $4
     where id = $1 and ended_at is null`,
    [id, end.bytesIn, end.bytesOut, end.reason],
  );
  return r.rowCount > 0;
}

/** The newest sessions first, of one job or of all. */
export async function listDebugSessions(
  q: Queryable,
  opts: { readonly jobId?: string; readonly limit?: number } = {},
): Promise<DebugSession[]> {
  const limit = Math.max(1, Math.min(opts.limit ?? 100, 10_000));
  const r = opts.jobId
    ? await q.query<Row>(
        `select ${SESSION} from debug_sessions where job_id = $1 order by started_at desc, id limit $2`,
        [opts.jobId, limit],
      )
    : await q.query<Row>(`select ${SESSION} from debug_sessions order by started_at desc, id limit $1`, [limit]);
  return r.rows.map(toSession);
}
