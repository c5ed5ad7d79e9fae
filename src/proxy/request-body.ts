import type { IncomingMessage } from 'node:http';
import { Readable, Transform, type TransformCallback } from 'node:stream';

export interface ReadBody {
  /** The body when it fit under the cap. */
  readonly complete: Buffer | null;
  /** When it did not fit: what was read so far (the rest is still in `req`). */
  readonly head: Buffer[] | null;
}

/** Reads a request body up to `cap` bytes without losing anything past it. */
export function readBodyUpTo(req: IncomingMessage, cap: number): Promise<ReadBody> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const cleanup = (): void => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('aborted', onAborted);
    };
    const onData = (chunk: Buffer): void => {
      chunks.push(chunk);
      size += chunk.length;
      if (size > cap) {
        cleanup();
        req.pause();
        resolve({ complete: null, head: chunks });
      }
    };
    const onEnd = (): void => {
      cleanup();
      resolve({ complete: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size), head: null });
    };
    const onError = (err: Error): void => {
      cleanup();
      reject(err);
    };
    const onAborted = (): void => onError(new Error('client aborted the request'));
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('aborted', onAborted);
  });
}

/** The buffered head followed by the rest of the request, as one stream for the upstream. */
export function replayBody(head: readonly Buffer[], rest: IncomingMessage): Readable {
  return Readable.from(
    (async function* () {
      yield* head;
      for await (const chunk of rest) yield chunk as Buffer;
    })(),
    { objectMode: false },
  );
}

/**
 * Passes a body through while looking for any of `needles` (lower case) in a normalised view of it:
 * NUL bytes dropped (UTF-16), backslash escapes of Zimbra's lenient JSON reader decoded (`\xHH`,
 * `\uXXXX`, a backslash before any other character), percent escapes decoded (`%XX`, Jetty's `%uXXXX`),
 * letters lower-cased; also across chunk boundaries. When one appears the stream fails with `onFound`'s
 * error, which aborts the upstream request before it is complete. Matching more than Zimbra would
 * execute is the safe side: a body this large that names a login element is refused.
 */
export class NeedleScanner extends Transform {
  private tail = '';
  private readonly keep: number;

  constructor(private readonly needles: RegExp, private readonly onFound: () => Error) {
    super();
    this.keep = 64 * 6 + 8;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    const text = this.tail + chunk.toString('latin1');
    const flat = normaliseForScan(text);
    if (this.needles.test(flat)) {
      done(this.onFound());
      return;
    }
    // Keep enough raw text to complete an escape or a needle split by the chunk boundary.
    this.tail = text.slice(-this.keep);
    done(null, chunk);
  }
}

/** The normalised view NeedleScanner searches (exported for tests). */
export function normaliseForScan(raw: string): string {
  return raw
    .replace(/\0/g, '')
    .replace(/\\(?:x([0-9a-fA-F]{2})|u([0-9a-fA-F]{4}))/g, (_m, x: string | undefined, u: string | undefined) => String.fromCharCode(parseInt((x ?? u)!, 16)))
    .replace(/%(?:u([0-9a-fA-F]{4})|([0-9a-fA-F]{2}))/g, (_m, u: string | undefined, x: string | undefined) => String.fromCharCode(parseInt((u ?? x)!, 16)))
    .replace(/\\(.)/g, '$1');
}
