/** An active ban. Times are milliseconds since the epoch. */
export interface Ban {
  /** Normalised address or network (`203.0.113.7`, `2001:db8:1:2::/64`, `198.51.100.0/24`). */
  readonly target: string;
  /** Rule id that caused it (`soap.auth-failed`), or `manual`. */
  readonly reason: string;
  readonly service: string;
  readonly since: number;
  readonly until: number;
  /** `proxy`: refused in-line by every gatekeeper; `firewall`: also dropped by the kernel. */
  readonly tier: 'proxy' | 'firewall';
  /** This is the Nth ban of the target within jail.bantimeIncrement.maxtime. */
  readonly count: number;
  readonly source: 'proxy' | 'log' | 'manual';
  /** Recorded in shadow mode: would have been enforced. */
  readonly shadow?: boolean;
  readonly note?: string;
}

export type BanEvent =
  | { type: 'ban'; ban: Ban }
  | { type: 'unban'; target: string }
  | { type: 'unban-all' }
  /** The event stream may have missed something (reconnect): reload the full list. */
  | { type: 'resync' };
