// Registering a runner (Ping, then Register with a registration token, then the credentials file)
// and declaring its labels at every start. Turns the server's refusals into sentences that name
// the instance and the fix.
import { Code, ConnectError } from "@connectrpc/connect";
import { toError } from "../../lifecycle/to-error.js";
import type { Logger } from "../../telemetry/log.js";
import type { ForgejoClient, RunnerRecord } from "./client.js";
import { type RunnerCredentials, writeCredentials } from "./credentials-file.js";
import {
  codeOf,
  ForgejoUnreachableError,
  type RegisterAgain,
  RegistrationRefusedError,
  RunnerUnregisteredError,
} from "./errors.js";
import { parseLabels } from "./labels.js";

export interface RegisterInput {
  readonly client: ForgejoClient;
  readonly token: string;
  readonly name: string;
  /** Full label texts; only the names go to the server. */
  readonly labels: readonly string[];
  readonly version: string;
  readonly credentialsFile: string;
  readonly timeoutMs?: number;
}

function unreachable(instance: string, err: unknown): ForgejoUnreachableError {
  const e = toError(err);
  const said = e instanceof ConnectError ? e.rawMessage : e.message;
  const cause = e.cause instanceof Error && !said.includes(e.cause.message) ? `: ${e.cause.message}` : "";
  const problem =
    codeOf(err) === Code.Unimplemented
      ? "no Forgejo runner API answered there (is it the instance's root URL, and are Actions enabled?)"
      : `${said}${cause}`;
  return new ForgejoUnreachableError(instance, problem, { cause: err });
}

/** Registers and writes the credentials file (0600); returns what was written. */
export async function registerRunner(input: RegisterInput): Promise<RunnerCredentials> {
  const { client } = input;
  const labels = parseLabels(input.labels);
  const timeoutMs = input.timeoutMs ?? 30_000;
  try {
    await client.ping(input.name, { timeoutMs });
  } catch (err) {
    throw unreachable(client.instance, err);
  }
  let runner: RunnerRecord;
  try {
    runner = await client.register(
      { name: input.name, token: input.token, version: input.version, labels: labels.map((l) => l.name) },
      { timeoutMs },
    );
  } catch (err) {
    const code = codeOf(err);
    // Forgejo answers invalid_argument for a missing, unknown or superseded token; Gitea ≤ 1.20 a bare error.
    if (
      code === Code.InvalidArgument ||
      code === Code.Unknown ||
      code === Code.PermissionDenied ||
      code === Code.NotFound
    )
      throw new RegistrationRefusedError(
        client.instance,
        err instanceof ConnectError ? err.rawMessage : toError(err).message,
        {
          cause: err,
        },
      );
    throw unreachable(client.instance, err);
  }
  if (!runner.uuid || !runner.token)
    throw new ForgejoUnreachableError(client.instance, "Register answered without a runner uuid and token");
  const creds: RunnerCredentials = {
    id: Number(runner.id),
    uuid: runner.uuid,
    name: runner.name || input.name,
    token: runner.token,
    address: client.instance,
    labels: labels.map((l) => l.text),
  };
  writeCredentials(input.credentialsFile, creds);
  return creds;
}

/**
 * Declares version and label names. Servers older than 1.21 lack Declare: they keep the labels given
 * at registration, and gnomon carries on. Unauthenticated means the registration is gone.
 */
export async function declareRunner(
  client: ForgejoClient,
  runner: Pick<RunnerCredentials, "name" | "uuid"> & { readonly registerAgain: RegisterAgain },
  labelNames: readonly string[],
  version: string,
  log: Logger,
  signal: AbortSignal,
): Promise<"declared" | "unsupported"> {
  try {
    await client.declare({ version, labels: labelNames }, { signal, timeoutMs: 30_000 });
    return "declared";
  } catch (err) {
    const code = codeOf(err);
    if (code === Code.Unimplemented) {
      log.warn("this forgejo has no Declare (older than 1.21); it keeps the labels given at registration");
      return "unsupported";
    }
    if (code === Code.Unauthenticated)
      throw new RunnerUnregisteredError(client.instance, `${runner.name} (${runner.uuid})`, runner.registerAgain, {
        cause: err,
      });
    throw err;
  }
}
