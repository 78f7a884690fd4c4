import { pino, type Logger } from 'pino';

export type { Logger };

// Secrets never reach a log line: whatever path a token travels under is
// censored by pino before serialisation.
export const REDACT_PATHS = [
  'token',
  '*.token',
  'workerToken',
  '*.workerToken',
  'worker_token',
  '*.worker_token',
  'authorization',
  '*.authorization',
  'headers.authorization',
  'adminToken',
  'joinToken',
  '*.joinToken',
  'password',
  '*.password',
];

export function createLogger(name: string, level = process.env.LOG_LEVEL || 'info'): Logger {
  return pino({
    name,
    level,
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
  });
}
