// A logger whose lines a test can read back, to assert what an operator would see.
import { type Logger, pino } from "pino";

export interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

export const WARN = 40;
export const INFO = 30;

export function capturedLog(): { log: Logger; lines: LogLine[]; count(re: RegExp, level?: number): number } {
  const lines: LogLine[] = [];
  const log = pino({ level: "debug" }, { write: (s: string) => lines.push(JSON.parse(s) as LogLine) });
  return {
    log,
    lines,
    count: (re, level) => lines.filter((l) => re.test(l.msg) && (level === undefined || l.level === level)).length,
  };
}
