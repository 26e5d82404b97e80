import pino from "pino";

export type Logger = pino.Logger;

/**
 * One JSON line per event on stdout. Callers never pass secrets; the redaction list is
 * a second line of defence should a document or header ever end up in a log call.
 */
export function createLogger(level = process.env.COUCHMAIL_LOG_LEVEL || "info", dest?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: "couchmail" },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: {
        paths: ["password", "*.password", "hash", "*.hash", "authorization", "*.authorization", "doc", "*.doc", "script", "*.script"],
        censor: "[redacted]",
      },
    },
    dest ?? pino.destination({ dest: 1, sync: true }),
  );
}

/** An error's message (and its cause's) for a log line: never its stack, never the values it was thrown about. */
export function errText(e: unknown): string {
  if (e instanceof Error) {
    const cause = (e as { cause?: unknown }).cause;
    return cause instanceof Error ? `${e.message}: ${cause.message}` : e.message;
  }
  return String(e);
}
