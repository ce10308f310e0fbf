// How long reading a workflow or action file takes at and past the document limits
// (src/workflow/document-limits.ts), and how long the caller's event loop stalls meanwhile. Shapes:
// a realistic large workflow, documents just under each limit (values, expansion, depth, many jobs
// with needs, many expressions), and hostile ones the limits refuse (alias bomb, nesting bomb).
// Each is read as the daemon reads it, on the parser thread (src/workflow/parse-thread.ts), and
// with the pure parser on the main thread (what the event loop would stall for without the thread;
// skipped past maxParseMs). Prints medians; nothing here is asserted.
// Usage: node --import tsx bench/parse-limits.ts [--runs 3]
import { monitorEventLoopDelay } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { parseActionFile } from "../src/workflow/action-file.js";
import { DOCUMENT_LIMITS } from "../src/workflow/document-limits.js";
import { WorkflowError, WorkflowLimitError } from "../src/workflow/errors.js";
import { readActionFile, readSingleJobWorkflow, readWorkflowFile } from "../src/workflow/parse-thread.js";
import { parseSingleJobWorkflow } from "../src/workflow/single-job.js";
import { parseWorkflowFile } from "../src/workflow/workflow.js";
import { aliasBombAction, aliasLevels } from "../test/support/yaml-bombs.js";

const { values } = parseArgs({ options: { runs: { type: "string", default: "3" } } });
const RUNS = Number(values.runs);
const MAX = DOCUMENT_LIMITS.maxBytes;

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

/** Jobs of ten steps each until the text nears `bytes` (one job of many steps for a payload). */
function realistic(bytes: number, oneJob = false): string {
  let s = "name: big\non: push\njobs:\n";
  for (let j = 0; s.length < bytes - 2_000; j++) {
    if (j === 0 || !oneJob) s += `  job${j}:\n    runs-on: ubuntu-latest\n    env:\n      FOO: bar${j}\n    steps:\n`;
    for (let k = 0; k < 10 && s.length < bytes - 2_000; k++)
      s += `      - name: step ${j} ${k}\n        run: |\n          echo hello ${j} ${k}\n          make -C dir${k} all\n        env:\n          X: "\${{ github.sha }}"\n`;
  }
  return s;
}

/** A workflow with one job whose env holds `n` short values. */
function manyValues(n: number): string {
  const per = 1_000;
  let env = "";
  for (let i = 0; i * per < n; i++) env += `      V${i}: [${Array(per).fill("a").join(",")}]\n`;
  return `on: push\njobs:\n  a:\n    runs-on: x\n    env:\n${env}    steps:\n      - run: echo\n`;
}

/** One anchor of 240 values repeated by a thousand aliases: just under maxNodes once expanded. */
function wideExpansion(): string {
  const anchor = `      base: &b [${Array(239).fill("v").join(",")}]\n`;
  const uses = Array.from({ length: 1_000 }, (_, i) => `      u${i}: *b\n`).join("");
  return `on: push\njobs:\n  a:\n    runs-on: x\n    env:\n${anchor}${uses}    steps:\n      - run: echo\n`;
}

/** Jobs in a chain, each needing the one before it. */
function needsChain(bytes: number): string {
  let s = "on: push\njobs:\n  j0:\n    runs-on: x\n    steps: [{ run: echo }]\n";
  for (let j = 1; s.length < bytes - 200; j++)
    s += `  j${j}:\n    needs: [j${j - 1}]\n    runs-on: x\n    steps: [{ run: echo }]\n`;
  return s;
}

/** One step whose run script is `bytes` of text, full of expressions. */
function expressions(bytes: number): string {
  const line = "          echo ${{ github.sha }} ${{ format('{0}-{1}', matrix.a, env.B) }}\n";
  return `on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: |\n${line.repeat(Math.floor((bytes - 200) / line.length))}`;
}

function outcomeOf(err: unknown): string {
  if (err === undefined) return "read";
  if (err instanceof WorkflowLimitError) return `refused (${err.limit})`;
  if (err instanceof WorkflowError) return `invalid (${err.problems.length} problems)`;
  return `threw ${String(err)}`;
}

/** Median wall time, the worst event-loop stall seen meanwhile, and how it ended. */
async function measure(parse: () => unknown): Promise<{ ms: number; stallMs: number; outcome: string }> {
  const ms: number[] = [];
  const stalls: number[] = [];
  let outcome = "";
  for (let i = 0; i < RUNS; i++) {
    const loop = monitorEventLoopDelay({ resolution: 10 });
    loop.enable();
    const at = performance.now();
    let err: unknown;
    try {
      await parse();
    } catch (e) {
      err = e;
    }
    ms.push(performance.now() - at);
    // Let the monitor's timer run once after the parse, so that a stall ending with it is counted.
    await new Promise((r) => setTimeout(r, 20));
    loop.disable();
    stalls.push(loop.max / 1e6);
    outcome = outcomeOf(err);
  }
  return { ms: median(ms), stallMs: median(stalls), outcome };
}

type Kind = "workflow" | "action" | "payload";
const PURE: Record<Kind, (t: string) => unknown> = {
  workflow: (t) => parseWorkflowFile("bench.yml", t),
  action: (t) => parseActionFile("a/action.yml", t),
  payload: (t) => parseSingleJobWorkflow(t, "bench.yml"),
};
const THREAD: Record<Kind, (t: string) => unknown> = {
  workflow: (t) => readWorkflowFile("bench.yml", t),
  action: (t) => readActionFile("a/action.yml", t),
  payload: (t) => readSingleJobWorkflow(t, "bench.yml"),
};

async function time(name: string, text: string, kind: Kind = "workflow"): Promise<void> {
  const thread = await measure(() => THREAD[kind](text));
  const pure = thread.outcome === "refused (maxParseMs)" ? undefined : await measure(() => PURE[kind](text));
  const cell = (n: number) => n.toFixed(0).padStart(7);
  console.log(
    `${name.padEnd(46)} ${String(Math.round(text.length / 1024)).padStart(5)} KiB ${cell(thread.ms)} ms ${cell(thread.stallMs)} ms  ${
      pure ? `${cell(pure.ms)} ms` : "   (past the budget)"
    }  ${thread.outcome}`,
  );
}

console.log(`median of ${RUNS} runs; limits ${JSON.stringify(DOCUMENT_LIMITS)}`);
console.log(
  `${"".padEnd(46)} ${"size".padStart(9)} ${"thread".padStart(10)} ${"stall".padStart(10)}  ${"main thread".padStart(10)}  outcome`,
);
await time("realistic workflow, 1 MiB", realistic(MAX));
await time("realistic Forgejo payload (one job), 1 MiB", realistic(MAX, true), "payload");
await time("240 000 values, no aliases", manyValues(240_000));
await time("240 000 values, from 1 000 aliases", wideExpansion());
await time("5 levels of nine aliases (66 430 values)", `a:\n${aliasLevels(5, "  ")}`);
await time("a script full of expressions, 256 KiB", expressions(256 * 1024));
await time("a script full of expressions, 1 MiB", expressions(MAX));
await time("jobs in a needs chain, 1 MiB", needsChain(MAX));
await time("alias bomb action.yml, 8 levels", aliasBombAction(8), "action");
await time("alias bomb action.yml, 30 levels", aliasBombAction(30), "action");
await time("400 000 nested flow sequences", `a: ${"[".repeat(400_000)}${"]".repeat(400_000)}\n`);
await time("over maxBytes", realistic(MAX + 10_000));
