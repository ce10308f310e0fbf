// The exit codes of every command, and which failures are a person's to fix. One scheme for all
// commands, so that a script and systemd read them alike: the unit's RestartPreventExitStatus=2
// (docs/examples/gnomon.service) stops restarting a daemon that would only repeat the same message.
// docs/exit-codes.md is the table users read; keep the two together.

export const EXIT = {
  /** The command did what was asked; a daemon stopped because it was asked to. */
  ok: 0,
  /** The work failed (a job of `gnomon exec`, a download, a build), or something broke that trying again may cure. */
  failed: 1,
  /** A person must change something first (usage, a setting, a credential, a registration): running it again unchanged repeats the message. */
  usage: 2,
  /** A second SIGINT/SIGTERM: exited at once, without waiting for running work. */
  forced: 130,
} as const;

/**
 * The stable error codes that mean "a person must fix this before it can work": a daemon ending
 * with one exits 2 and is not restarted. Anything else (an outage, a bug) exits 1, and a restart
 * may cure it. Codes rather than classes, so this table needs no import of every stage.
 */
export const OPERATOR_ERROR_CODES: readonly string[] = [
  "cli.usage", // a flag or an argument
  "config.invalid", // a setting
  "forgejo.unregistered", // the runner was deleted on Forgejo: register again
  "forgejo.registration-refused", // a wrong or stale registration token
  "forgejo.unreachable", // the instance URL answers nothing that speaks the runner protocol
  "forgejo.credentials", // the credentials file is missing or unreadable
  "forgejo.label", // a label that cannot be used
  "github.registration-lost", // the runner was deleted on GitHub: register again
  "github.runner-version", // GitHub refuses the advertised version: github.runnerVersion
  "github.not-registered", // no registration in github.credentialsDir
  "github.credentials-file", // the registration files are broken
  "github.registration", // register/remove refused (token, group, name, server settings)
  "github.session-conflict", // another process listens as this runner
  "queue.access-refused", // RabbitMQ refuses the user, password or vhost of AMQP_URL
  "queue.topology-conflict", // a queue exists with other settings
  "store.migration-edited", // the database was migrated by a different build
  "store.database-too-new", // the fleet runs a newer gnomon
  "vm.catalog-invalid", // the image catalog file
  "vm.unknown-label", // an image name the catalog does not have
  "vm.image-missing", // pull or build the image first
  "vm.image-stale", // built from another recipe: build the image again
  "vm.tool-missing", // install QEMU or an image tool
  "orchestrator.no-labels", // nothing to serve: the catalog or orchestrator.labels
  "telemetry.metrics-listen", // orchestrator.metricsListen cannot be listened on
  "debug-ssh.listen", // orchestrator.debugSsh.listen cannot be listened on
  "debug-ssh.host-key", // the debug SSH host key file is not a usable private key
];
const TO_FIX: ReadonlySet<string> = new Set(OPERATOR_ERROR_CODES);

/** True when `err` carries one of OPERATOR_ERROR_CODES. */
export function isOperatorsToFix(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" && TO_FIX.has(code);
}

/** The exit code a command ends with because of `err`: 2 when a person must fix something, else 1. */
export function exitCodeOf(err: unknown): number {
  return isOperatorsToFix(err) ? EXIT.usage : EXIT.failed;
}
