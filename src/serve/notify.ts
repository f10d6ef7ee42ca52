// Telling the service manager how serve is doing, as sd_notify(3) does for systemd's
// Type=notify (contrib/systemd/fspool-serve.service; spec/serve.md, "Under systemd"): READY=1
// once every queue has started (and after each reload), RELOADING=1 while a reload is read,
// STOPPING=1 at a stop. Until READY=1 systemd holds a `systemctl reload`, so a SIGHUP cannot
// reach serve before it listens for one, and a start that fails (a bad configuration) fails
// `systemctl start` itself.
import { describe } from '../errors.js';
import type { Logger } from '../log.js';
import { native } from '../sys/native.js';

/** Tells the service manager a state ("READY=1\nSTATUS=..."). */
export type Notify = (state: string) => void;

/**
 * The notifier for the socket the service manager named in NOTIFY_SOCKET, or one that does
 * nothing without it (started by hand, by cron, or by a Type=simple unit). A message that
 * cannot be sent is said once (WARN): systemd then ends a start that waits for READY=1 at its
 * TimeoutStartSec, and the cause is in the journal.
 */
export function serviceNotifier(socket: string | undefined, log: Logger): Notify {
  if (!socket) return () => {};
  let said = false;
  return (state) => {
    try {
      native().sdNotify(socket, state);
    } catch (e) {
      if (said) return;
      said = true;
      log.warn(`cannot tell the service manager ${JSON.stringify(state.split('\n')[0])} at NOTIFY_SOCKET=${socket}: ${describe(e)}; a systemd unit of Type=notify then sees no READY=1 (use Type=simple where no manager listens)`);
    }
  };
}

/** RELOADING=1 with the time the reload began, which systemd asks of Type=notify-reload. */
export function reloadingState(): string {
  return `RELOADING=1\nMONOTONIC_USEC=${process.hrtime.bigint() / 1000n}`;
}
