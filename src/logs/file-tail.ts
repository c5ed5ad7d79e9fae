import { createHash } from 'node:crypto';
import { promises as fsp, watch, type FSWatcher, type Stats } from 'node:fs';
import { basename, dirname, join } from 'node:path';

/** Where reading stopped: the file's identity and the offset after the last complete line. */
export interface TailPosition {
  readonly dev: number;
  readonly ino: number;
  readonly pos: number;
  /** Identity of the file's content: sha256 of its first `headLength` bytes (absent in positions saved by older versions). */
  readonly head?: string;
  readonly headLength?: number;
}

/** How many bytes of a file's start identify its content (fail2ban keeps a hash of the first line for this). */
export const HEAD_BYTES = 256;

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

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/**
 * `tail -F` for one file, by polling (inotify misses renames on some file systems and in containers):
 * follows appends; on rename-rotation finishes the old file, then reads the new one from its start;
 * on truncation (copytruncate) starts over at 0, seen by size OR by the file's first bytes no longer
 * being the ones read (a truncate followed at once by more writes than were there before leaves a larger
 * file: size alone misses it); waits for a file that does not exist yet or was
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
  /** The current file's first bytes as read (up to HEAD_BYTES): its identity, checked on every look. */
  private head: Buffer = Buffer.alloc(0);

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
    const same = saved !== null && st.dev === saved.dev && st.ino === saved.ino;
    await this.open(st, same ? (st.size >= saved.pos ? saved.pos : 0) : undefined);
    if (same && saved.head !== undefined && saved.headLength !== undefined && this.pos > 0) {
      // The saved identity: the file must still start with the bytes read before the stop.
      const buf = await this.readHead(saved.headLength);
      if (buf.length === saved.headLength && sha256(buf) === saved.head) this.head = buf;
      else this.restartAtZero();
    }
  }

  private async readHead(length: number): Promise<Buffer> {
    const buf = Buffer.alloc(length);
    const { bytesRead } = await this.fd!.read(buf, 0, length, 0);
    return buf.subarray(0, bytesRead);
  }

  /** Whether the file still starts with the bytes it started with when they were read. */
  private async headSame(): Promise<boolean> {
    if (!this.fd || this.head.length === 0 || this.pos === 0) return true;
    return (await this.readHead(this.head.length)).equals(this.head);
  }

  private restartAtZero(): void {
    this.pos = 0;
    this.head = Buffer.alloc(0);
    this.partial = [];
    this.partialLength = 0;
    this.dropping = false;
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
    // Starting past the beginning (first run at the end, or a saved position): take the head as it is now.
    this.head = this.pos > 0 ? await this.readHead(Math.min(HEAD_BYTES, this.pos)) : Buffer.alloc(0);
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
      } else if (st.size < this.pos || !(await this.headSame())) {
        // Truncated in place (copytruncate): the new content starts at 0. Seen by size when the file is
        // smaller than what was read, by its first bytes when new writes already made it as large again.
        this.restartAtZero();
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
      if (this.head.length < HEAD_BYTES && this.pos === this.head.length) {
        this.head = Buffer.concat([this.head, buf.subarray(0, Math.min(bytesRead, HEAD_BYTES - this.head.length))]);
      }
      this.pos += bytesRead;
      const lines = this.split(buf.subarray(0, bytesRead));
      if (lines.length > 0) {
        const head = this.head.length > 0 ? { head: sha256(this.head), headLength: this.head.length } : {};
        await this.o.onLines(lines, { dev: this.ident.dev, ino: this.ident.ino, pos: this.pos - this.partialLength, ...head });
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
