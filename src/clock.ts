/** Time is injected so policy stays a pure function of state, config and now (milliseconds since epoch). */
export interface Clock {
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };
