// The bundle's entry point: everything else is importable without side effects.
import { runAsProgram } from "./main.js";

await runAsProgram();
