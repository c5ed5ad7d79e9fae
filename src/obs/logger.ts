import { pino, type Logger } from 'pino';

export type { Logger };

/**
 * Structured JSON logs on stdout. Anything that can carry a secret is redacted wherever it appears
 * in a log object: passwords, cookies, Authorization headers, SOAP password fields, the API token.
 */
export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      base: { name: 'gatekeeper' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: {
        paths: [
          'password',
          '*.password',
          'headers.authorization',
          'headers.cookie',
          'headers["set-cookie"]',
          '*.headers.authorization',
          '*.headers.cookie',
          'token',
          '*.token',
          'api.token',
          'config.api.token',
        ],
        censor: '[redacted]',
      },
    },
    destination,
  );
}
