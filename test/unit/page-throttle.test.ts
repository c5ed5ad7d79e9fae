import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PageThrottle } from '../../src/proxy/page-throttle.js';

describe('PageThrottle: one ban page per address per interval', () => {
  it('pages once, then refuses until the interval has passed', () => {
    const t = new PageThrottle(60_000);
    assert.equal(t.take('203.0.113.1', 1_000), true);
    assert.equal(t.take('203.0.113.1', 1_001), false);
    assert.equal(t.take('203.0.113.1', 60_999), false);
    assert.equal(t.take('203.0.113.2', 1_002), true, 'another address has its own interval');
    assert.equal(t.take('203.0.113.1', 61_000), true);
    assert.equal(t.take('203.0.113.1', 61_001), false);
  });

  it('interval 0: the page every time, nothing remembered', () => {
    const t = new PageThrottle(0);
    for (let i = 0; i < 5; i++) assert.equal(t.take('203.0.113.1', i), true);
    assert.equal(t.size, 0);
  });

  it('memory is bounded: the least recently paged address is forgotten first', () => {
    const t = new PageThrottle(60_000, 3);
    for (const a of ['a', 'b', 'c']) t.take(a, 0);
    t.take('d', 1); // forgets a
    assert.equal(t.size, 3);
    assert.equal(t.take('a', 2), true, 'a was forgotten: it may get a page again');
    assert.equal(t.take('c', 3), false, 'c is still remembered');
  });
});
