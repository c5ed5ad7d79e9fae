/** What a detector (in-line HTTP or log line) reports about one login attempt. */
export interface AuthEvent {
  readonly outcome: 'failure' | 'success';
  /** Rule id `<service>.<condition>`, the same in logs, metrics, fixtures and the README. */
  readonly ruleId: string;
  /** soap, web-form, admin, dav, imap, pop3, smtp ... (a metric label, never an address). */
  readonly service: string;
  /** Normalised client address (see net/ip.ts). */
  readonly ip: string;
  /** Login name as typed, lower-cased; undefined when the protocol does not tell. */
  readonly account?: string | undefined;
  readonly source: 'proxy' | 'log';
  /** How many attempts this event stands for (a SOAP batch can carry several AuthRequests). */
  readonly attempts?: number;
}
