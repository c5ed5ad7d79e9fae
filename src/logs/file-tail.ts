import { promises as fsp, watch, type FSWatcher, type Stats } from 'node:fs';
import { basename, dirname, join } from 'node:path';

/** Where reading stopped: the file's identity and the offset after the last complete line. */
export interface TailPosition {
  readonly dev: number;
  readonly ino: number;
  readonly pos: number;
}

export interface FileTailOptions {
  readonly path: string;
  /** How often the file is checked (ms). */
  readonly pollMs: number;
  /** Saved position from an earlier run; null on a first run (which starts at the end of the file). */
  readonly start: TailPosition | null;
  readonly maxLineLength: number;
  /** Complete lines, in order; `pos` is the position after them. Awaited before reading on. */
  readonly onLines: (lines: string[], pos: TailPosition) => Promise<void>;
  /** A line longer than maxLineLength was dropped. */
  readonly onOversize?: () => void;
  readonly onError?: (err: Error) => void;
}

const CHUNK = 64 * 1024;

/**
 * `tail -F` for one file, by polling (inotify misses renames on some file systems and in containers):
 * follows appends; on rename-rotation finishes the old file, then reads the new one from its start;
 * on truncation (copytruncate) starts over at 0; waits for a file that does not exist yet or was
 * deleted; resumes from a saved position, including the rest of a file rotated while it was stopped.
 */
export class FileTail {
  private fd: fsp.FileHandle | null = null;
  private ident: { dev: number; ino: number } | null = null;
  private pos = 0;
  private partial: Buffer[] = [];
  private partialLength = 0;
  private dropping = false;
  private timer: NodeJS.Timeout | null = null;
  /** Ticks run one after another on this chain (timer, watch events and poll() alike). */
  private chain: Promise<void> = Promise.resolve();
  private queued = false;
  private stopped = false;
  private firstOpen = true;
  private watcher: FSWatcher | null = null;

  constructor(private readonly o: FileTailOptions) {}

  async start(): Promise<void> {
    await this.resume();
    // inotify (via fs.watch on the directory, which survives rotation) makes reads immediate; the
    // poll stays as the safety net for file systems where events do not arrive.
    try {
      const name = basename(this.o.path);
      this.watcher = watch(dirname(this.o.path), { persistent: false }, (_event, file) => {
        if (file === null || String(file).startsWith(name)) void this.enqueue();
      });
      this.watcher.on('error', () => undefined);
    } catch {
      this.watcher = null;
    }
    this.schedule();
  }

  /** Runs one tick after the ones before it; a tick already waiting to run covers this call too. */
  private enqueue(): Promise<void> {
    if (this.stopped) return this.chain;
    if (this.queued) return this.chain;
    this.queued = true;
    const run = this.chain.then(() => {
      this.queued = false;
      return this.tick();
    });
    this.chain = run.catch((err: Error) => this.o.onError?.(err));
    return this.chain;
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.enqueue().finally(() => this.schedule());
    }, this.o.pollMs);
  }

  /** Reads whatever is there now (tests and shutdown use it to flush). */
  async poll(): Promise<void> {
    await this.chain;
    await this.enqueue();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.watcher?.close();
    if (this.timer) clearTimeout(this.timer);
    await this.chain;
    await this.fd?.close().catch(() => undefined);
    this.fd = null;
  }

  private async statPath(): Promise<Stats | null> {
    try {
      return await fsp.stat(this.o.path);
    } catch {
      return null;
    }
  }

  /** On start: pick up where the last run stopped. */
  private async resume(): Promise<void> {
    const st = await this.statPath();
    const saved = this.o.start;
    if (saved && !(st && st.dev === saved.dev && st.ino === saved.ino)) {
      // Rotated while we were stopped: finish the old file if it is still next to the new one.
      const old = await this.findRotated(saved);
      if (old) {
        const fd = await fsp.open(old, 'r');
        this.fd = fd;
        this.ident = { dev: saved.dev, ino: saved.ino };
        this.pos = saved.pos;
        await this.readToEnd();
        await fd.close();
        this.fd = null;
      }
      this.firstOpen = false; // the current file is new since then: read it from the start
    }
    if (!st) {
      // Not there yet: when it appears, everything in it is new.
      this.firstOpen = false;
      return;
    }
    await this.open(st, saved && st.dev === saved.dev && st.ino === saved.ino ? (st.size >= saved.pos ? saved.pos : 0) : undefined);
  }

  private async findRotated(saved: TailPosition): Promise<string | null> {
    const dir = dirname(this.o.path);
    const base = basename(this.o.path);
    let names: string[];
    try {
      names = await fsp.readdir(dir);
    } catch {
      return null;
    }
    for (const n of names) {
      if (n === base || !n.startsWith(base) || n.endsWith('.gz') || n.endsWith('.bz2') || n.endsWith('.xz')) continue;
      try {
        const st = await fsp.stat(join(dir, n));
        if (st.dev === saved.dev && st.ino === saved.ino) return join(dir, n);
      } catch {
        // vanished meanwhile
      }
    }
    return null;
  }

  private async open(st: Stats, at?: number): Promise<void> {
    this.fd = await fsp.open(this.o.path, 'r');
    // The handle must be the file we stat'ed: re-stat through it.
    const real = await this.fd.stat();
    this.ident = { dev: real.dev, ino: real.ino };
    this.pos = at ?? (this.firstOpen && real.ino === st.ino ? real.size : 0);
    this.firstOpen = false;
    this.partial = [];
    this.partialLength = 0;
    this.dropping = false;
  }

  private async tick(): Promise<void> {
    if (this.stopped && !this.fd) return;
    const st = await this.statPath();
    if (this.fd && this.ident) {
      const same = st !== null && st.dev === this.ident.dev && st.ino === this.ident.ino;
      if (!same) {
        // Renamed away or deleted: what was written to it before the switch is still ours.
        await this.readToEnd();
        await this.fd.close().catch(() => undefined);
        this.fd = null;
        this.ident = null;
        if (st) await this.open(st, 0);
        else return;
      } else if (st.size < this.pos) {
        // Truncated in place (copytruncate): the new content starts at 0.
        this.pos = 0;
        this.partial = [];
        this.partialLength = 0;
        this.dropping = false;
      }
      await this.readToEnd();
      return;
    }
    if (st) {
      await this.open(st);
      await this.readToEnd();
    }
  }

  private async readToEnd(): Promise<void> {
    const fd = this.fd;
    if (!fd || !this.ident) return;
    const buf = Buffer.allocUnsafe(CHUNK);
    for (;;) {
      const { bytesRead } = await fd.read(buf, 0, CHUNK, this.pos);
      if (bytesRead === 0) return;
      this.pos += bytesRead;
      const lines = this.split(buf.subarray(0, bytesRead));
      if (lines.length > 0) {
        await this.o.onLines(lines, { dev: this.ident.dev, ino: this.ident.ino, pos: this.pos - this.partialLength });
      }
    }
  }

  private split(chunk: Buffer): string[] {
    const lines: string[] = [];
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(10, start);
      if (nl === -1) break;
      const piece = chunk.subarray(start, nl);
      if (this.dropping) {
        this.dropping = false;
      } else if (this.partialLength + piece.length <= this.o.maxLineLength) {
        const whole = this.partial.length ? Buffer.concat([...this.partial, piece]) : piece;
        let line = whole.toString('utf8');
        if (line.endsWith('\r')) line = line.slice(0, -1);
        lines.push(line);
      } else {
        this.o.onOversize?.();
      }
      this.partial = [];
      this.partialLength = 0;
      start = nl + 1;
    }
    const rest = chunk.subarray(start);
    if (rest.length > 0 && !this.dropping) {
      if (this.partialLength + rest.length > this.o.maxLineLength) {
        // Too long already: drop it up to its newline instead of buffering without bound.
        this.o.onOversize?.();
        this.dropping = true;
        this.partial = [];
        this.partialLength = 0;
      } else {
        this.partial.push(Buffer.from(rest));
        this.partialLength += rest.length;
      }
    }
    return lines;
  }
}
