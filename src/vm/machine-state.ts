// A VM's life as a discriminated union with pure transitions. Each state carries only what it has;
// machine.ts applies events and logs each state change once. Boot phases only move forward.
import type { BootPhase } from "./errors.js";

export type StopReason = "destroyed" | "boot-failed" | "boot-timeout" | "cancelled" | "guest-exited";

export type VmState =
  | { readonly t: "creating" }
  | { readonly t: "booting"; readonly pid: number; readonly sshPort: number; readonly phase: BootPhase }
  | { readonly t: "ready"; readonly pid: number; readonly sshPort: number }
  | { readonly t: "stopping"; readonly pid: number; readonly why: StopReason }
  | { readonly t: "gone"; readonly why: StopReason; readonly exitCode: number | null };

export type VmEvent =
  | { readonly e: "spawned"; readonly pid: number; readonly sshPort: number }
  | { readonly e: "phase"; readonly phase: BootPhase }
  | { readonly e: "ssh-ready" }
  | { readonly e: "stop"; readonly why: StopReason }
  | { readonly e: "exited"; readonly exitCode: number | null };

const ORDER: readonly BootPhase[] = ["booting", "kernel", "network", "ssh"];

/** The later of two boot phases: evidence of progress is never taken back. */
export function laterPhase(a: BootPhase, b: BootPhase): BootPhase {
  return ORDER.indexOf(b) > ORDER.indexOf(a) ? b : a;
}

export function transition(s: VmState, ev: VmEvent): VmState {
  switch (ev.e) {
    case "spawned":
      return s.t === "creating" || s.t === "gone"
        ? { t: "booting", pid: ev.pid, sshPort: ev.sshPort, phase: "booting" }
        : s;
    case "phase":
      return s.t === "booting" ? { ...s, phase: laterPhase(s.phase, ev.phase) } : s;
    case "ssh-ready":
      return s.t === "booting" ? { t: "ready", pid: s.pid, sshPort: s.sshPort } : s;
    case "stop":
      switch (s.t) {
        case "creating":
          return { t: "gone", why: ev.why, exitCode: null };
        case "booting":
        case "ready":
          return { t: "stopping", pid: s.pid, why: ev.why };
        case "stopping":
        case "gone":
          return s;
      }
      break;
    case "exited":
      switch (s.t) {
        case "creating":
          return s;
        case "booting":
          return { t: "gone", why: "boot-failed", exitCode: ev.exitCode };
        case "ready":
          return { t: "gone", why: "guest-exited", exitCode: ev.exitCode };
        case "stopping":
          return { t: "gone", why: s.why, exitCode: ev.exitCode };
        case "gone":
          return s;
      }
  }
  return s;
}
