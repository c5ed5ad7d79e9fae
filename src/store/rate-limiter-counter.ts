import { RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible';
import type { CountResult, FailureCounter } from './store.js';

/**
 * Wraps a rate-limiter-flexible limiter once, so that "limited" is a returned value and every other
 * rejection is a real error. Used with RateLimiterRedis (plus a memory insurance limiter) and
 * RateLimiterMemory alike.
 */
export class RateLimiterCounter implements FailureCounter {
  constructor(private readonly limiter: RateLimiterAbstract) {}

  async consume(key: string, points: number): Promise<CountResult> {
    try {
      const res = await this.limiter.consume(key, points);
      return { allowed: true, consumed: res.consumedPoints, msBeforeReset: res.msBeforeNext };
    } catch (err) {
      if (!(err instanceof RateLimiterRes)) throw err;
      // The limiter added the points before refusing: take them back so a refused attempt is not a failure.
      await this.limiter.reward(key, points).catch(() => undefined);
      return { allowed: false, consumed: Math.max(0, err.consumedPoints - points), msBeforeReset: err.msBeforeNext };
    }
  }

  async add(key: string, points: number): Promise<CountResult> {
    const res = await this.limiter.penalty(key, points);
    return { allowed: res.remainingPoints > 0, consumed: res.consumedPoints, msBeforeReset: res.msBeforeNext };
  }

  async reward(key: string, points: number): Promise<void> {
    if (points <= 0) return;
    await this.limiter.reward(key, points);
  }

  async get(key: string): Promise<number> {
    const res = await this.limiter.get(key);
    return res ? Math.max(0, res.consumedPoints) : 0;
  }

  async delete(key: string): Promise<void> {
    await this.limiter.delete(key);
  }
}
