// A person at the other end of debug SSH, for tests: key pairs as `ssh-keygen -t ed25519` makes
// them, logins with ssh2's client (what was offered, how it ended, the host key the endpoint
// showed), and commands, terminals and SFTP over a logged-in connection.
import { createHash } from "node:crypto";
import ssh2, { Client, type ClientChannel } from "ssh2";
import { type PublicKey, parsePublicKey } from "../../src/debug-ssh/ssh-keys.js";

export interface KeyPair {
  readonly privateKey: string;
  /** The authorized_keys line a forge lists. */
  readonly publicLine: string;
  readonly key: PublicKey;
}

export function keyPair(): KeyPair {
  for (;;) {
    const kp = ssh2.utils.generateKeyPairSync("ed25519");
    // ssh2 writes one key in 256 (public half starting with a zero byte) malformed; make another.
    if (ssh2.utils.parseKey(kp.private) instanceof Error) continue;
    const key = parsePublicKey(kp.public);
    if (!key) throw new Error("ssh2 made a key it cannot read");
    return { privateKey: kp.private, publicLine: kp.public, key };
  }
}

/** in: authenticated (the client stays open); refused: authentication failed; dropped: cut before or during it. */
export type LoginOutcome = "in" | "refused" | "dropped";

export interface Login {
  readonly outcome: LoginOutcome;
  readonly client: Client;
  /** SHA256 fingerprint of the host key the endpoint presented, when it got that far. */
  readonly hostFingerprint: string | undefined;
}

export function login(
  port: number,
  username: string,
  key: KeyPair | { readonly password: string },
  host = "127.0.0.1",
): Promise<Login> {
  return new Promise((resolve) => {
    const client = new Client();
    let settled = false;
    let hostFingerprint: string | undefined;
    const done = (outcome: LoginOutcome) => {
      if (settled) return;
      settled = true;
      if (outcome !== "in") client.end();
      resolve({ outcome, client, hostFingerprint });
    };
    client.on("ready", () => done("in"));
    client.on("error", (err: Error & { level?: string }) =>
      done(err.level === "client-authentication" ? "refused" : "dropped"),
    );
    client.on("close", () => done("dropped"));
    client.connect({
      host,
      port,
      username,
      ...("password" in key ? { password: key.password } : { privateKey: key.privateKey }),
      readyTimeout: 30_000,
      hostVerifier: (blob: Buffer) => {
        hostFingerprint = `SHA256:${createHash("sha256").update(blob).digest("base64").replace(/=+$/, "")}`;
        return true;
      },
    });
  });
}

/** Runs a command without a terminal; its output and exit code. */
export function execIn(
  client: Client,
  command: string,
): Promise<{ stdout: string; stderr: string; code: number | null }> {
  return new Promise((resolve, reject) => {
    client.exec(command, (err, ch) => {
      if (err) return reject(err);
      collect(ch).then(resolve, reject);
    });
  });
}

/** Opens an interactive shell with a terminal, types `input`, and returns what the terminal showed until it closed. */
export function shellIn(client: Client, input: string): Promise<{ stdout: string; code: number | null }> {
  return new Promise((resolve, reject) => {
    client.shell({ term: "xterm", rows: 24, cols: 80 }, (err, ch) => {
      if (err) return reject(err);
      collect(ch).then(resolve, reject);
      ch.write(input);
    });
  });
}

/** Reads a file over SFTP (the guest's own SFTP server, through the endpoint). */
export function sftpRead(client: Client, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    client.sftp((err, sftp) => {
      if (err) return reject(err);
      sftp.readFile(path, (e, data) => {
        sftp.end();
        if (e) reject(e);
        else resolve(data.toString("utf8"));
      });
    });
  });
}

function collect(ch: ClientChannel): Promise<{ stdout: string; stderr: string; code: number | null }> {
  return new Promise((resolve) => {
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let code: number | null = null;
    ch.on("data", (b: Buffer) => out.push(b));
    ch.stderr.on("data", (b: Buffer) => err.push(b));
    ch.on("exit", (c: number | null) => {
      code = c;
    });
    ch.on("close", () =>
      resolve({ stdout: Buffer.concat(out).toString("utf8"), stderr: Buffer.concat(err).toString("utf8"), code }),
    );
  });
}
