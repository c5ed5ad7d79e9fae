import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync, renameSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { FileTail, type TailPosition } from '../../src/logs/file-tail.js';

function harness(path: string, start: TailPosition | null = null, maxLineLength = 1000) {
  const lines: string[] = [];
  let last: TailPosition | null = null;
  let oversize = 0;
  const tail = new FileTail({
    path,
    pollMs: 10_000, // the tests drive it with poll()
    start,
    maxLineLength,
    onLines: async (ls, pos) => {
      lines.push(...ls);
      last = pos;
    },
    onOversize: () => oversize++,
  });
  return { tail, lines, position: () => last, oversize: () => oversize };
}

const tmp = (): string => mkdtempSync(join(tmpdir(), 'gk-tail-'));

describe('FileTail (real files)', () => {
  it('first run starts at the end of an existing file, then follows appends (partial lines wait)', async () => {
    const p = join(tmp(), 'a.log');
    writeFileSync(p, 'old 1\nold 2\n');
    const h = harness(p);
    await h.tail.start();
    appendFileSync(p, 'new 1\nnew ');
    await h.tail.poll();
    assert.deepEqual(h.lines, ['new 1']);
    appendFileSync(p, '2\n');
    await h.tail.poll();
    assert.deepEqual(h.lines, ['new 1', 'new 2']);
    await h.tail.stop();
  });

  it('survives rename rotation: finishes the old file, then reads the new one from its start', async () => {
    const d = tmp();
    const p = join(d, 'a.log');
    writeFileSync(p, '');
    const h = harness(p);
    await h.tail.start();
    appendFileSync(p, 'a1\na2\n');
    await h.tail.poll();
    appendFileSync(p, 'a3\n'); // written just before rotation, not read yet
    renameSync(p, `${p}.1`);
    appendFileSync(`${p}.1`, 'a4\n'); // the old writer still had it open
    writeFileSync(p, 'b1\nb2\n');
    await h.tail.poll();
    assert.deepEqual(h.lines, ['a1', 'a2', 'a3', 'a4', 'b1', 'b2']);
    await h.tail.stop();
  });

  it('survives copytruncate: starts over at 0', async () => {
    const p = join(tmp(), 'a.log');
    writeFileSync(p, '');
    const h = harness(p);
    await h.tail.start();
    appendFileSync(p, 'x1\nx2\nx3\n');
    await h.tail.poll();
    truncateSync(p, 0);
    await h.tail.poll();
    appendFileSync(p, 'y1\n');
    await h.tail.poll();
    assert.deepEqual(h.lines, ['x1', 'x2', 'x3', 'y1']);
    await h.tail.stop();
  });

  it('copytruncate followed at once by more than the old size (before the tailer looks): the file head tells, every new line read from its start', async () => {
    const p = join(tmp(), 'a.log');
    writeFileSync(p, '');
    const h = harness(p);
    await h.tail.start();
    appendFileSync(p, 'x1\nx2\nx3\n');
    await h.tail.poll();
    // Synchronous: no tick (timer or inotify) can run between the truncation and the writes.
    truncateSync(p, 0);
    appendFileSync(p, 'y1 longer than before\ny2\ny3\n');
    await h.tail.poll();
    assert.deepEqual(h.lines, ['x1', 'x2', 'x3', 'y1 longer than before', 'y2', 'y3']);
    // Exactly the old size too.
    truncateSync(p, 0);
    appendFileSync(p, 'z1 longer than before\nz2\nz3\n'); // same length as the y lines
    await h.tail.poll();
    assert.deepEqual(h.lines.slice(6), ['z1 longer than before', 'z2', 'z3']);
    await h.tail.stop();
  });

  it('a file truncated and rewritten larger while the tailer was stopped is read from its start (saved head identity)', async () => {
    const p = join(tmp(), 'a.log');
    writeFileSync(p, '');
    const h = harness(p);
    await h.tail.start();
    appendFileSync(p, 'x1\nx2\n');
    await h.tail.poll();
    await h.tail.stop();
    const saved = h.position()!;
    assert.ok(saved.head && saved.headLength === 6, JSON.stringify(saved));
    truncateSync(p, 0);
    appendFileSync(p, 'y1\ny2\ny3\n');
    const h2 = harness(p, saved);
    await h2.tail.start();
    await h2.tail.poll();
    assert.deepEqual(h2.lines, ['y1', 'y2', 'y3']);
    await h2.tail.stop();
    // Unchanged head: resumes where it stopped.
    appendFileSync(p, 'y4\n');
    const h3 = harness(p, h2.position());
    await h3.tail.start();
    await h3.tail.poll();
    assert.deepEqual(h3.lines, ['y4']);
    await h3.tail.stop();
  });

  it('survives deletion and re-creation, and a file that does not exist yet', async () => {
    const p = join(tmp(), 'late.log');
    const h = harness(p);
    await h.tail.start();
    await h.tail.poll();
    writeFileSync(p, 'first\n');
    await h.tail.poll();
    rmSync(p);
    await h.tail.poll();
    writeFileSync(p, 'second\n');
    await h.tail.poll();
    assert.deepEqual(h.lines, ['first', 'second']);
    await h.tail.stop();
  });

  it('resumes from a saved position: lines written while stopped are read once', async () => {
    const p = join(tmp(), 'a.log');
    writeFileSync(p, '');
    const h1 = harness(p);
    await h1.tail.start();
    appendFileSync(p, 'l1\nl2\n');
    await h1.tail.poll();
    await h1.tail.stop();
    appendFileSync(p, 'l3\nl4\n');
    const h2 = harness(p, h1.position());
    await h2.tail.start();
    await h2.tail.poll();
    assert.deepEqual(h1.lines, ['l1', 'l2']);
    assert.deepEqual(h2.lines, ['l3', 'l4']);
    await h2.tail.stop();
  });

  it('resumes across a rotation that happened while stopped (rest of the old file, then the new one)', async () => {
    const d = tmp();
    const p = join(d, 'zimbra.log');
    writeFileSync(p, '');
    const h1 = harness(p);
    await h1.tail.start();
    appendFileSync(p, 'o1\n');
    await h1.tail.poll();
    await h1.tail.stop();
    appendFileSync(p, 'o2\n');
    renameSync(p, `${p}.1`);
    writeFileSync(p, 'n1\n');
    const h2 = harness(p, h1.position());
    await h2.tail.start();
    await h2.tail.poll();
    assert.deepEqual(h2.lines, ['o2', 'n1']);
    await h2.tail.stop();
  });

  it('drops a line longer than the cap (and counts it) without losing the next one', async () => {
    const p = join(tmp(), 'a.log');
    writeFileSync(p, '');
    const h = harness(p, null, 50);
    await h.tail.start();
    appendFileSync(p, `${'z'.repeat(200)}\nshort\n`);
    await h.tail.poll();
    assert.deepEqual(h.lines, ['short']);
    assert.equal(h.oversize(), 1);
    await h.tail.stop();
  });
});

describe('FileTail under a steady stream of lines', () => {
  it('rotations by rename and delete/recreate lose no line and repeat none', async () => {
    const d = tmp();
    const p = join(d, 'stream.log');
    writeFileSync(p, '');
    const seen: string[] = [];
    const tail = new FileTail({ path: p, pollMs: 20, start: null, maxLineLength: 1000, onLines: async (ls) => void seen.push(...ls) });
    await tail.start();
    let n = 0;
    for (let round = 0; round < 12; round++) {
      for (let i = 0; i < 200; i++) appendFileSync(p, `line ${n++}\n`);
      await new Promise((r) => setTimeout(r, round % 3 === 0 ? 0 : 15));
      if (round % 4 === 1) renameSync(p, `${p}.${round}`); // logrotate: rename, the writer reopens
      if (round % 4 === 3) {
        await tail.poll();
        rmSync(p); // deleted and recreated (the tail finishes what it has open first)
      }
    }
    for (let i = 0; i < 200; i++) appendFileSync(p, `line ${n++}\n`);
    await tail.poll();
    await new Promise((r) => setTimeout(r, 100));
    await tail.poll();
    await tail.stop();
    const expected = Array.from({ length: n }, (_, i) => `line ${i}`);
    assert.equal(new Set(seen).size, seen.length, 'no line counted twice');
    assert.deepEqual(seen, expected, 'every line, in order');
  });
});
