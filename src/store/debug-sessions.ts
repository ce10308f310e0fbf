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

// The byte counts are bigint columns read as float8: pg returns bigint as a string and PGlite as a
// number (docs/store.md), and a session's bytes fit a double exactly far beyond any real session.
const SESSION = `id, job_id as "jobId", orchestrator, actor, key_fingerprint as "keyFingerprint", source,
  started_at as "startedAt", ended_at as "endedAt", bytes_in::float8 as "bytesIn", bytes_out::float8 as "bytesOut",
  end_reason as "endReason"`;

export async function startDebugSession(q: Queryable, s: NewDebugSession): Promise<void> {
  await q.query(
    `insert into debug_sessions (id, job_id, orchestrator, actor, key_fingerprint, source)
     values ($1::uuid, $2::uuid, $3::text, $4::text, $5::text, $6::text)`,
    [s.id, s.jobId, s.orchestrator, s.actor, s.keyFingerprint, s.source],
  );
}

/** Closes a session once; false when it was closed before (or never recorded). */
export async function endDebugSession(q: Queryable, id: string, end: DebugSessionEnd): Promise<boolean> {
  const r = await q.query(
    `update debug_sessions set ended_at = now(), bytes_in = $2::bigint, bytes_out = $3::bigint, end_reason = $4::text
     where id = $1::uuid and ended_at is null`,
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
    ? await q.query<DebugSession>(
        `select ${SESSION} from debug_sessions where job_id = $1::uuid order by started_at desc, id limit $2`,
        [opts.jobId, limit],
      )
    : await q.query<DebugSession>(`select ${SESSION} from debug_sessions order by started_at desc, id limit $1`, [
        limit,
      ]);
  return r.rows;
}
