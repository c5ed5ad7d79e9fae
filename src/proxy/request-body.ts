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
      resolve({ complete: Buffer.concat(chunks, size), head: null });
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
 * Passes a body through while looking for `needle` (also across chunk boundaries); when it appears
 * the stream fails with `onFound`'s error, which aborts the upstream request before it is complete.
 */
export class NeedleScanner extends Transform {
  private tail = '';

  constructor(private readonly needle: string, private readonly onFound: () => Error) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    const text = this.tail + chunk.toString('latin1');
    if (text.includes(this.needle)) {
      done(this.onFound());
      return;
    }
    this.tail = text.slice(-(this.needle.length - 1));
    done(null, chunk);
  }
}
