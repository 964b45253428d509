// Telling a Redis connection cut under a command (Redis stopped, restarting, a network blip) from a
// command Redis refused: the first is waited out and said once, the second is the caller's to report.

/** An error from a connection that dropped, not a reply of Redis's (a ReplyError never is one). */
export function isConnectionDrop(err: unknown): boolean {
  const e = err as { name?: unknown; message?: unknown } | null;
  if (!e || e.name === 'ReplyError') return false;
  return /Connection is closed|aborted due to connection close|Stream isn't writeable|ECONNRESET|ECONNREFUSED|EPIPE|ETIMEDOUT/.test(String(e.message));
}
