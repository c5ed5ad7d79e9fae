import type { LogSourceConfig } from '../config/schema.js';
import type { LogDetector } from '../detect/log-detector.js';
import { LogStream, type StreamState } from '../detect/log-stream.js';
import { MAX_LINE_LENGTH } from '../detect/log-line.js';
import type { Logger } from '../obs/logger.js';
import type { Metrics } from '../obs/metrics.js';
import type { Enforcer } from '../policy/enforcer.js';
import type { StateStore } from '../store/store.js';
import { FileTail, type TailPosition } from './file-tail.js';

const positionKey = (path: string): string => `pos:${path}`;

/**
 * Follows every configured log file and feeds what the log rules find to the same enforcer the
 * proxy uses. Positions are saved in the store after each batch of lines is counted, so a restart
 * neither loses nor re-counts lines.
 */
export class LogWatcher {
  private readonly tails: FileTail[] = [];
  /** Unconfigured zimbra-proxy addresses already warned about (bounded like the detector's set). */
  private readonly warnedProxies = new Set<string>();
  /** The last unconfigured proxy seen (for /healthz-style reports), null when none. */
  unknownProxy: { address: string; lines: number } | null = null;

  constructor(
    private readonly sources: readonly LogSourceConfig[],
    private readonly detector: LogDetector,
    private readonly enforcer: Enforcer,
    private readonly state: StateStore,
    private readonly metrics: Metrics,
    private readonly log: Logger,
    private readonly pollMs = 250,
  ) {}

  async start(): Promise<void> {
    for (const source of this.sources) {
      const stream = new LogStream(this.detector, source.type);
      let start: TailPosition | null = null;
      try {
        const raw = await this.state.getValue(positionKey(source.path));
        if (raw) {
          const saved = JSON.parse(raw) as TailPosition & { stream?: StreamState | null };
          start = saved;
          // A torn line read before the stop still marks the lines after it as client-written.
          stream.restoreState(saved.stream);
        }
      } catch (err) {
        this.log.warn({ path: source.path, err: (err as Error).message }, 'log position not readable: starting at the end of the file');
      }
      const tail = new FileTail({
        path: source.path,
        pollMs: this.pollMs,
        start,
        maxLineLength: MAX_LINE_LENGTH,
        onLines: (lines, pos) => this.handle(source, stream, lines, pos),
        onOversize: () => this.metrics.logLines.inc({ type: source.type, result: 'oversize' }),
        onError: (err) => {
          this.metrics.logErrors.inc({ type: source.type });
          this.log.warn({ path: source.path, err: err.message }, 'log file read error');
        },
      });
      await tail.start();
      this.tails.push(tail);
      this.log.info({ path: source.path, type: source.type, resumed: start !== null }, 'following log file');
    }
  }

  private async handle(source: LogSourceConfig, stream: LogStream, lines: string[], pos: TailPosition): Promise<void> {
    for (const line of lines) {
      if (line === '') continue;
      const r = stream.feed(line);
      if (r.kind === 'forged') {
        this.metrics.logLines.inc({ type: source.type, result: 'forged' });
        continue;
      }
      if (r.kind === 'skipped') {
        this.metrics.logLines.inc({ type: source.type, result: 'skipped' });
        continue;
      }
      if (r.kind === 'nomatch') {
        this.metrics.logLines.inc({ type: source.type, result: 'unmatched' });
        continue;
      }
      this.metrics.logLines.inc({ type: source.type, result: 'matched' });
      if (r.match.unknownProxy) this.noteUnknownProxy(source, r.match.unknownProxy);
      this.metrics.logMatches.inc({ rule: r.match.rule.id, counted: String(r.match.counted) });
      if (r.match.event) {
        try {
          await this.enforcer.record(r.match.event);
        } catch (err) {
          this.log.error({ err: (err as Error).message, rule: r.match.rule.id }, 'counting a log event failed');
        }
      }
    }
    try {
      await this.state.setValue(positionKey(source.path), JSON.stringify({ ...pos, stream: stream.saveState() }));
    } catch {
      // The store is down: the position is saved with the next batch.
    }
  }

  private noteUnknownProxy(source: LogSourceConfig, address: string): void {
    this.metrics.logLines.inc({ type: source.type, result: 'unknown-proxy' });
    this.unknownProxy = { address, lines: (this.unknownProxy?.address === address ? this.unknownProxy.lines : 0) + 1 };
    if (this.warnedProxies.has(address) || this.warnedProxies.size >= 256) return;
    this.warnedProxies.add(address);
    this.log.warn(
      { code: 'GK_ERR_LOG_UNKNOWN_PROXY', path: source.path, proxy: address },
      `log lines arrive through zimbra-proxy ${address}, which is not in zimbraProxies: neither it nor the oip= it reports is counted; add it to zimbraProxies`,
    );
  }

  /** For /healthz: a warning when lines come through a zimbra-proxy that is not configured. */
  health(): { files: number; warning?: string } {
    const u = this.unknownProxy;
    if (!u) return { files: this.sources.length };
    return { files: this.sources.length, warning: `GK_ERR_LOG_UNKNOWN_PROXY: ${u.lines} lines came through zimbra-proxy ${u.address}, which is not in zimbraProxies: they are not counted` };
  }

  /** Reads what is there now in every file (tests, shutdown). */
  async poll(): Promise<void> {
    for (const t of this.tails) await t.poll();
  }

  async stop(): Promise<void> {
    await Promise.all(this.tails.map((t) => t.stop()));
  }
}
