// UpdateLog with acknowledged offsets: sends the rows the server has not acknowledged, moves the
// buffer only by the server's ack index, and on the final flush (no_more) insists until every row
// is acknowledged. Knows nothing of events or steps.
import { Code } from "@connectrpc/connect";
import type { CallOptions, ForgejoClient, LogRowOut } from "./client.js";
import { codeOf } from "./errors.js";
import type { TaskRecord } from "./task-record.js";

/** Rows per UpdateLog call: keeps each request well below the 1 MiB body limit of common proxies. */
export const MAX_ROWS_PER_CALL = 500;
const MAX_BYTES_PER_CALL = 512 * 1024;

/** The final flush returned before the server held every row: retry it. */
export class LogsIncompleteError extends Error {
  override readonly name = "LogsIncompleteError";
  readonly code = "forgejo.logs-incomplete";
  constructor(
    readonly taskId: bigint,
    readonly acked: number,
    readonly total: number,
  ) {
    super(
      `Forgejo holds ${acked} of ${total} log rows of task ${taskId} after the final upload; sending the rest again.`,
    );
  }
}

function batch(rows: readonly LogRowOut[]): LogRowOut[] {
  const out: LogRowOut[] = [];
  let bytes = 0;
  for (const r of rows) {
    const size = r.content.length + 64;
    if (out.length > 0 && (out.length >= MAX_ROWS_PER_CALL || bytes + size > MAX_BYTES_PER_CALL)) break;
    out.push(r);
    bytes += size;
  }
  return out;
}

export type ShipOutcome = "sent" | "nothing" | "archived";

/**
 * Sends the pending rows in batches. With `noMore`, the batch holding the last row says so, and
 * the call throws LogsIncompleteError unless every row ended up acknowledged. `archived`: the server
 * closed the log (it was finalised there) and takes no more rows; they are dropped.
 */
export async function shipLog(
  record: TaskRecord,
  client: ForgejoClient,
  opts: CallOptions & { readonly noMore: boolean },
): Promise<ShipOutcome> {
  const end = record.rowCount; // rows appended while we are sending wait for the next call
  if (record.ackedRows >= end) return "nothing";
  while (record.ackedRows < end) {
    const { index, rows } = record.pendingRows();
    const chunk = batch(rows.slice(0, end - index));
    const last = index + chunk.length >= record.rowCount;
    let ackIndex: number;
    try {
      ({ ackIndex } = await client.updateLog(
        { taskId: record.taskId, index, rows: chunk, noMore: opts.noMore && last },
        opts,
      ));
    } catch (err) {
      if (codeOf(err) === Code.AlreadyExists) {
        record.dropPendingRows();
        return "archived";
      }
      throw err;
    }
    const before = record.ackedRows;
    record.confirm(ackIndex);
    if (record.ackedRows === before) break; // the server took nothing (a gap on its side): let the caller retry
  }
  if (opts.noMore && record.ackedRows < record.rowCount)
    throw new LogsIncompleteError(record.taskId, record.ackedRows, record.rowCount);
  return "sent";
}
