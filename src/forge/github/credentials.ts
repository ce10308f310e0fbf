// The registration on disk, in the official runner's three files so users recognise them and can
// bring an existing one: `.runner` (settings), `.credentials` (OAuth client), `.credentials_rsaparams`
// (private key). Written 0600 in a 0700 directory, atomically; JIT configs decode to the same shape.

import type { KeyObject } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { z } from "zod";
import type { JwtAlg, OAuthCredentials } from "./auth.js";
import { CredentialsFileError, NotRegisteredError, RegistrationError } from "./errors.js";
import { fromRsaParams, toRsaParams } from "./rsa-key.js";
import { CredentialsFile, JitConfig, RsaParamsFile, RunnerSettingsFile } from "./wire.js";

export const FILE_NAMES = {
  settings: ".runner",
  credentials: ".credentials",
  key: ".credentials_rsaparams",
} as const;

export interface Registration {
  readonly settings: RunnerSettingsFile;
  readonly credentials: CredentialsFile;
  readonly key: KeyObject;
}

/** `name (id 42)`: how messages name a registered runner. */
export function describeRunner(reg: Registration): string {
  return `${reg.settings.agentName} (id ${reg.settings.agentId})`;
}

/** Whether this registration receives jobs through the broker (github.com) or the classic queue (GHES). */
export function usesBroker(reg: Registration): boolean {
  return reg.settings.useV2Flow && reg.settings.serverUrlV2 !== "";
}

/** PS256 unless the server explicitly registered the runner without FIPS cryptography (spec 4.1). */
export function jwtAlg(reg: Registration): JwtAlg {
  return reg.credentials.data.requireFipsCryptography || usesBroker(reg) ? "PS256" : "RS256";
}

/** OAuth credentials for classic calls, and for broker/run-service calls (V2 URL during auth migration). */
export function oauthCredentials(reg: Registration, forBroker: boolean): OAuthCredentials {
  const d = reg.credentials.data;
  const v2 = forBroker && d.enableAuthMigrationByDefault && d.authorizationUrlV2 ? d.authorizationUrlV2 : undefined;
  const audience = v2 ?? d.authorizationUrl;
  return {
    clientId: d.clientId,
    authorizationUrl: audience,
    tokenUrl: v2 ?? d.oauthEndpointUrl ?? d.authorizationUrl,
    alg: jwtAlg(reg),
  };
}

export function registrationExists(dir: string): boolean {
  return Object.values(FILE_NAMES).some((f) => existsSync(join(dir, f)));
}

export function writeRegistration(dir: string, reg: Registration): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const { settings, credentials } = reg;
  writeSecretFile(join(dir, FILE_NAMES.key), `${JSON.stringify(toRsaParams(reg.key), null, 2)}\n`);
  writeSecretFile(
    join(dir, FILE_NAMES.credentials),
    `${JSON.stringify(
      {
        scheme: credentials.scheme,
        data: {
          clientId: credentials.data.clientId,
          authorizationUrl: credentials.data.authorizationUrl,
          requireFipsCryptography: credentials.data.requireFipsCryptography ? "True" : "False",
          ...(credentials.data.oauthEndpointUrl ? { oauthEndpointUrl: credentials.data.oauthEndpointUrl } : {}),
          ...(credentials.data.authorizationUrlV2
            ? {
                authorizationUrlV2: credentials.data.authorizationUrlV2,
                enableAuthMigrationByDefault: credentials.data.enableAuthMigrationByDefault ? "true" : "false",
              }
            : {}),
        },
      },
      null,
      2,
    )}\n`,
  );
  writeSecretFile(join(dir, FILE_NAMES.settings), `${JSON.stringify(settings, null, 2)}\n`);
}

export function readRegistration(dir: string): Registration {
  const missing = Object.values(FILE_NAMES).filter((f) => !existsSync(join(dir, f)));
  if (missing.length > 0) throw new NotRegisteredError(dir, `missing ${missing.join(", ")}`);
  const settings = readJsonFile(join(dir, FILE_NAMES.settings), RunnerSettingsFile);
  const credentials = readJsonFile(join(dir, FILE_NAMES.credentials), CredentialsFile);
  const keyFile = join(dir, FILE_NAMES.key);
  return { settings, credentials, key: keyFrom(keyFile, readJsonFile(keyFile, RsaParamsFile)) };
}

export function deleteRegistration(dir: string): void {
  for (const f of Object.values(FILE_NAMES)) rmSync(join(dir, f), { force: true });
}

/**
 * Decodes `encoded_jit_config` (spec 3.7): base64 of a JSON object mapping file names to base64 file
 * contents. GitHub writes these files itself, so names may be PascalCase and booleans strings.
 */
export function decodeJitConfig(encoded: string): Registration {
  const fail = (problem: string, cause?: unknown) =>
    new RegistrationError(
      `the JIT config ${problem}; pass the \`encoded_jit_config\` value returned by the generate-jitconfig API unchanged`,
      cause === undefined ? undefined : { cause },
    );
  let files: Record<string, string>;
  try {
    files = JitConfig.parse(JSON.parse(Buffer.from(encoded.trim(), "base64").toString("utf8")));
  } catch (err) {
    throw fail("is not base64 of a JSON object", err);
  }
  const file = (name: string): unknown => {
    const entry = Object.entries(files).find(([k]) => k.toLowerCase() === name);
    if (!entry) throw fail(`has no ${name} file`);
    try {
      return JSON.parse(
        Buffer.from(entry[1], "base64")
          .toString("utf8")
          .replace(/^\uFEFF/, ""),
      );
    } catch (err) {
      throw fail(`has a ${name} file that is not base64 of JSON`, err);
    }
  };
  const parse = <S extends z.ZodType>(name: string, schema: S): z.output<S> => {
    const r = schema.safeParse(file(name));
    if (!r.success)
      throw fail(`has an unreadable ${name} (${r.error.issues[0]?.path.join(".")}: ${r.error.issues[0]?.message})`);
    return r.data;
  };
  const settings = parse(FILE_NAMES.settings, RunnerSettingsFile);
  const credentials = parse(FILE_NAMES.credentials, CredentialsFile);
  const params = parse(FILE_NAMES.key, RsaParamsFile);
  let key: KeyObject;
  try {
    key = fromRsaParams(params);
  } catch (err) {
    throw fail("has a private key that does not load", err);
  }
  // A JIT runner is single-use by construction, whatever its .runner says.
  return { settings: { ...settings, ephemeral: true }, credentials, key };
}

function keyFrom(file: string, params: RsaParamsFile): KeyObject {
  try {
    return fromRsaParams(params);
  } catch (err) {
    throw new CredentialsFileError(file, "does not hold a usable RSA key", { cause: err });
  }
}

function readJsonFile<S extends z.ZodType>(file: string, schema: S): z.output<S> {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, "utf8").replace(/^\uFEFF/, ""));
  } catch (err) {
    throw new CredentialsFileError(file, "is not valid JSON", { cause: err });
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    const i = parsed.error.issues[0];
    throw new CredentialsFileError(file, `lacks ${i?.path.join(".") || "its content"} (${i?.message})`);
  }
  return parsed.data;
}

/** Writes a file readable by its owner only, never visible half-written or with wider permissions. */
function writeSecretFile(path: string, text: string): void {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, text, { mode: 0o600, flag: "w" });
  chmodSync(tmp, 0o600); // the mode above is filtered by the umask only for new files; be explicit
  renameSync(tmp, path);
}
