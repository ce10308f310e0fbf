// The pino root logger: JSON lines when stderr is not a TTY, readable lines on a TTY. Job-related
// code logs through jobLogger() so every line carries the job id.
import { type LevelWithSilent, type Logger, pino } from "pino";

export type { Logger };

export const LOG_LEVELS = ["trace", "debug", "info", "warn", "error", "fatal", "silent"] as const;

export interface LogOptions {
  level: LevelWithSilent;
  /** Force readable output (true) or JSON (false); default: readable when stderr is a TTY. */
  pretty?: boolean;
}

let root: Logger = pino({ level: "silent" });

export function createRootLogger(opts: LogOptions): Logger {
  const pretty = opts.pretty ?? Boolean(process.stderr.isTTY);
  root = pretty
    ? pino({ level: opts.level, base: undefined }, prettyStream())
    : pino({ level: opts.level, base: { pid: process.pid } }, pino.destination(2));
  return root;
}

/** The process's root logger; silent until createRootLogger ran (tests stay quiet by default). */
export function rootLogger(): Logger {
  return root;
}

export function jobLogger(parent: Logger, job: { jobId: string; forge?: string; label?: string }): Logger {
  return parent.child(job);
}

function prettyStream(): NodeJS.WritableStream {
  // pino-pretty is optional at run time: the bundle ships without it and falls back to a compact printer.
  return {
    write(line: string) {
      try {
        const o = JSON.parse(line) as Record<string, unknown>;
        const { level, time, msg, ...rest } = o;
        const names: Record<number, string> = {
          10: "TRACE",
          20: "DEBUG",
          30: "INFO",
          40: "WARN",
          50: "ERROR",
          60: "FATAL",
        };
        const colours: Record<number, string> = { 10: "90", 20: "36", 30: "32", 40: "33", 50: "31", 60: "35" };
        const lv = Number(level);
        const ts = new Date(Number(time)).toISOString().slice(11, 23);
        const extra = Object.keys(rest).length ? ` ${formatFields(rest)}` : "";
        process.stderr.write(
          `\x1b[90m${ts}\x1b[0m \x1b[${colours[lv] ?? "0"}m${(names[lv] ?? "?").padEnd(5)}\x1b[0m ${String(msg)}${extra}\n`,
        );
      } catch {
        process.stderr.write(line);
      }
      return true;
    },
  } as unknown as NodeJS.WritableStream;
}

function formatFields(fields: Record<string, unknown>): string {
  return Object.entries(fields)
    .map(([k, v]) => `\x1b[90m${k}=\x1b[0m${typeof v === "string" ? v : JSON.stringify(v)}`)
    .join(" ");
}
