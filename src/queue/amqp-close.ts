// Closing amqplib channels and connections without hanging: amqplib resolves close() only when the
// broker answers, so a close racing a dead socket would wait forever. These settle on the answer,
// on the 'close' event, or after a bound, and never throw.
import { once } from "node:events";
import type { Channel, ChannelModel } from "amqplib";

const CLOSE_BOUND_MS = 2_000;

export async function closeQuietly(x: Channel | ChannelModel): Promise<void> {
  const bound = AbortSignal.timeout(CLOSE_BOUND_MS);
  const closed = once(x, "close", { signal: bound }).catch(() => {});
  let call: Promise<void>;
  try {
    call = x.close().catch(() => {});
  } catch {
    call = Promise.resolve();
  }
  await Promise.race([call, closed]);
}
