import { Client, type Dispatcher } from 'undici';

/*
 * Keep-alive connections to one upstream (undici Clients, no pipelining) with admission control.
 *
 * At most `limit` requests that were sent within the last `freshMs` and are still unanswered; the
 * others wait their turn, first come first served, for the next connection that comes free. This is
 * HAProxy's per-server `maxconn` with a queue: past a few dozen requests in flight, more concurrency
 * does not make Zimbra answer faster, and every extra upstream connection costs the proxy CPU
 * (docs/performance.md has the measurements). It also shields Zimbra's Jetty from bursts.
 *
 * Requests stop counting after `freshMs`: Zimbra holds many requests open for minutes on purpose
 * (webmail's long poll in every open tab, ActiveSync Ping, large downloads to slow clients). A plain
 * cap would make everyone wait behind them; here a request waits at most about `freshMs`, however
 * many long requests are open, and those get connections of their own (up to `max`).
 *
 * Connections are reused most recently freed first, so a few hot ones carry steady traffic; the rest
 * are closed by undici's keep-alive timeout and reopened on use.
 */

/** One request as the pool sees it. The request object itself carries these fields: no allocation per request. */
export interface PooledRequest extends Dispatcher.DispatchHandler {
  readonly opts: Dispatcher.DispatchOptions;
  /** When the request was sent (performance.now()); set by the pool. */
  admittedAt: number;
  /** The request takes one of the `limit` places; set and cleared by the pool. */
  counted: boolean;
  /** True when the request no longer needs to be sent (its client left while it waited). */
  readonly abandoned: boolean;
}

export interface UpstreamPoolOptions {
  /** Requests in flight that were sent within `freshMs` (0: no limit). */
  readonly limit: number;
  readonly freshMs: number;
  /** Connections never exceeded. */
  readonly max: number;
  /** Options for each undici Client (pipelining is always 1). */
  readonly client: Omit<Client.Options, 'pipelining'>;
}

const ignore = (): void => undefined;

export class UpstreamPool {
  private readonly limit: number;
  /** Free connections; the most recently freed is used first. */
  private readonly idle: Client[] = [];
  private readonly clients: Client[] = [];
  /** Requests that take a place. */
  private fresh = 0;
  /** Sent requests in the order they were sent (some no longer count); the oldest at `oldest`. */
  private readonly sent: PooledRequest[] = [];
  private oldest = 0;
  /** Waiting requests, the first at `next`. */
  private readonly queue: PooledRequest[] = [];
  private next = 0;
  private timer: NodeJS.Timeout | null = null;
  private pumping = false;
  private closed = false;

  constructor(
    private readonly origin: string,
    private readonly options: UpstreamPoolOptions,
  ) {
    this.limit = options.limit > 0 ? options.limit : Number.POSITIVE_INFINITY;
  }

  /** Connections opened so far (each idle, busy, or closed by keep-alive and reopened on use). */
  get connections(): number {
    return this.clients.length;
  }

  /** Requests waiting for their turn. */
  get waiting(): number {
    return this.queue.length - this.next;
  }

  /** Sends the request now if it may go and a connection is free or can be opened; else it waits. */
  dispatch(r: PooledRequest): void {
    if (this.closed) {
      r.onError?.(new Error('upstream pool closed'));
      return;
    }
    if (this.next === this.queue.length) {
      const now = performance.now();
      if (this.fresh >= this.limit) this.expire(now);
      if (this.fresh < this.limit) {
        const client = this.idle.pop() ?? this.open();
        if (client) {
          this.send(client, r, now);
          return;
        }
      }
    }
    this.queue.push(r);
    this.arm();
  }

  /** The request ended (answered, failed, or its client left): its place goes to the next in line. */
  release(r: PooledRequest): void {
    if (!r.counted) return;
    r.counted = false;
    this.fresh--;
    // Only free connections here: the one that carried this request is free again a moment later
    // ('drain'), and opening another in the meantime would only add connections.
    if (this.next < this.queue.length) this.pump(false);
  }

  /** Fails the waiting requests and closes every connection. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const waiting = this.queue.slice(this.next);
    this.queue.length = 0;
    this.next = 0;
    const err = new Error('upstream pool closed');
    for (const r of waiting) r.onError?.(err);
    this.idle.length = 0;
    await Promise.all(this.clients.map((c) => c.destroy().catch(ignore)));
  }

  private open(): Client | undefined {
    if (this.clients.length >= this.options.max) return undefined;
    const client = new Client(this.origin, { ...this.options.client, pipelining: 1 });
    // 'drain': the connection finished its request (answered, failed or aborted) and is free again.
    client.on('drain', () => this.freed(client));
    client.on('connectionError', ignore); // reported to the request's handler
    this.clients.push(client);
    return client;
  }

  private send(client: Client, r: PooledRequest, now: number): void {
    r.counted = true;
    r.admittedAt = now;
    this.fresh++;
    // Drop requests that no longer count from the front as we go: the list holds about what is in flight.
    while (this.oldest < this.sent.length && !this.sent[this.oldest]!.counted) this.oldest++;
    if (this.oldest === this.sent.length) {
      this.sent.length = 0;
      this.oldest = 0;
    } else if (this.oldest >= 1024 && this.oldest * 2 >= this.sent.length) {
      this.sent.splice(0, this.oldest);
      this.oldest = 0;
    }
    this.sent.push(r);
    // With pipelining 1 an accepted request makes the client busy (dispatch returns false) until it
    // emits 'drain'. A request refused on the spot (invalid; its handler has had onError) leaves the
    // client empty, and no 'drain' will come: it is free at once.
    if (client.dispatch(r.opts, r) || client.stats.size === 0) this.freed(client);
  }

  private freed(client: Client): void {
    if (this.closed) return;
    this.idle.push(client);
    if (this.next < this.queue.length) this.pump(false);
  }

  /** Sends waiting requests while they may go and connections are free (or, from the timer, can be opened). */
  private pump(mayOpen: boolean): void {
    if (this.pumping) return; // a send that failed at once releases and frees inside the loop below
    this.pumping = true;
    const now = performance.now();
    while (this.next < this.queue.length) {
      const r = this.queue[this.next]!;
      if (r.abandoned) {
        this.next++;
        continue;
      }
      if (this.fresh >= this.limit) {
        this.expire(now);
        if (this.fresh >= this.limit) break;
      }
      const client = this.idle.pop() ?? (mayOpen ? this.open() : undefined);
      if (!client) break;
      this.next++;
      this.send(client, r, now);
    }
    this.pumping = false;
    if (this.next === this.queue.length) {
      this.queue.length = 0;
      this.next = 0;
    } else if (this.next >= 1024 && this.next * 2 >= this.queue.length) {
      this.queue.splice(0, this.next);
      this.next = 0;
    }
    this.arm();
  }

  /** Requests sent `freshMs` ago or earlier stop counting. */
  private expire(now: number): void {
    while (this.oldest < this.sent.length) {
      const r = this.sent[this.oldest]!;
      if (r.counted) {
        if (now - r.admittedAt < this.options.freshMs) return;
        r.counted = false;
        this.fresh--;
      }
      this.oldest++;
    }
  }

  /**
   * While requests wait, one timer fires when the oldest counted request stops counting (or after
   * `freshMs` if none counts: no connection came free in time). It may open new connections.
   */
  private arm(): void {
    if (this.next === this.queue.length) {
      if (this.timer) clearTimeout(this.timer);
      this.timer = null;
      return;
    }
    if (this.timer) return;
    const now = performance.now();
    while (this.oldest < this.sent.length && !this.sent[this.oldest]!.counted) this.oldest++;
    const first = this.sent[this.oldest];
    const due = (first ? first.admittedAt : now) + this.options.freshMs - now;
    this.timer = setTimeout(this.onTimer, Math.max(1, Math.ceil(due)));
    this.timer.unref();
  }

  private readonly onTimer = (): void => {
    this.timer = null;
    this.pump(true);
  };
}
