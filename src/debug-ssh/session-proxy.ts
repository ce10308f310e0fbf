// One session channel of a debug SSH login, carried into the VM over gnomon's own connection: the
// user's terminal request, window changes and signals go through, their shell, command or SFTP
// session runs in the guest as the job's user, and its output and exit status come back. Bytes are
// counted both ways for the audit trail. It offers nothing else: environment variables, X11 and
// agent forwarding get no listener, so ssh2 refuses them.
import type { ClientChannel, PseudoTtyInfo, ServerChannel, Session } from "ssh2";
import type { PtyRequest, SessionRequest } from "../executor/ssh.js";

/** Opens a session in the held VM as the job's user (SshExecutor.openSession). */
export type OpenSession = (req: SessionRequest) => Promise<ClientChannel>;

export interface ByteCounter {
  bytesIn: number;
  bytesOut: number;
}

type Reject = (() => void) | undefined;
type Accept = (() => ServerChannel | undefined) | undefined;

/**
 * Serves one session channel. `onOpenFailed` hears why the VM did not open the session (an
 * SshDisconnectedError: its connection is gone, and the window has nothing left to offer).
 */
export function proxySession(
  session: Session,
  open: OpenSession,
  counter: ByteCounter,
  onOpenFailed: (err: unknown) => void,
): void {
  let pty: PtyRequest | undefined;
  let started = false;
  let upstream: ClientChannel | undefined;

  session.on("pty", (accept: (() => void) | undefined, _reject: Reject, info: PseudoTtyInfo) => {
    pty = {
      term: info.term || "xterm",
      rows: info.rows,
      cols: info.cols,
      width: info.width,
      height: info.height,
      modes: info.modes ? (info.modes as Record<string, number>) : undefined,
    };
    accept?.();
  });
  session.on("window-change", (accept: (() => void) | undefined, _reject: Reject, info: PseudoTtyInfo) => {
    if (pty) pty = { ...pty, rows: info.rows, cols: info.cols, width: info.width, height: info.height };
    upstream?.setWindow(info.rows, info.cols, info.height, info.width);
    accept?.();
  });
  session.on("signal", (accept: (() => void) | undefined, _reject: Reject, info: { name: string }) => {
    upstream?.signal(info.name);
    accept?.();
  });

  const start = async (req: SessionRequest, accept: Accept, reject: Reject) => {
    if (started) return reject?.();
    started = true;
    let up: ClientChannel;
    try {
      up = await open(req);
    } catch (err) {
      reject?.();
      onOpenFailed(err);
      return;
    }
    const down = accept?.();
    if (!down) {
      up.close();
      return;
    }
    upstream = up;
    carry(down, up, counter);
  };

  session.on("shell", (accept: Accept, reject: Reject) => void start({ pty }, accept, reject));
  session.on(
    "exec",
    (accept: Accept, reject: Reject, info: { command: string }) =>
      void start({ command: info.command, pty }, accept, reject),
  );
  // SFTP only, and as raw bytes to the guest's own SFTP server: no file of this host is ever served.
  session.on("subsystem", (accept: Accept, reject: Reject, info: { name: string }) => {
    if (info.name !== "sftp") return reject?.();
    void start({ subsystem: "sftp" }, accept, reject);
  });
}

/** Both directions with backpressure; the exit status goes out before the channel is ended. */
function carry(down: ServerChannel, up: ClientChannel, counter: ByteCounter): void {
  let exit: { code: number } | { signal: string; dumped: boolean; message: string } | undefined;
  down.on("data", (b: Buffer) => {
    counter.bytesIn += b.length;
  });
  up.on("data", (b: Buffer) => {
    counter.bytesOut += b.length;
  });
  up.stderr.on("data", (b: Buffer) => {
    counter.bytesOut += b.length;
  });
  down.pipe(up);
  up.pipe(down, { end: false });
  up.stderr.pipe(down.stderr, { end: false });
  up.on("exit", (code: number | null, signal?: string, dumped?: boolean, message?: string) => {
    exit =
      code !== null && code !== undefined
        ? { code }
        : { signal: signal ?? "KILL", dumped: dumped === true, message: message ?? "" };
  });
  up.on("close", () => {
    const finish = () => {
      if (exit && "code" in exit) down.exit(exit.code);
      else if (exit) down.exit(exit.signal, exit.dumped, exit.message);
      down.end();
    };
    // What the guest wrote last goes out before the status and the end.
    if (down.writableNeedDrain) down.once("drain", finish);
    else finish();
  });
  down.on("close", () => up.close());
  down.on("error", () => up.close());
  up.on("error", () => down.close());
}
