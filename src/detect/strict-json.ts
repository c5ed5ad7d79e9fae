/*
 * Standard JSON with no duplicate keys: the subset of Zimbra's lenient JSON reader (Element.java,
 * JSONElement) on which both readings agree. Zimbra resolves duplicate keys by rules of its own
 * (addUniqueElement: an empty object or null never overrides, a later plain value replaces an earlier
 * one...), JSON.parse keeps the last: a body with a duplicate key could be read one way here and
 * another way by Zimbra, so such bodies are refused instead of guessed at.
 */

export type StrictJson = { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly reason: string };

export function parseStrictJson(text: string): StrictJson {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    return { ok: false, reason: `not standard JSON (${(err as Error).message.slice(0, 80)})` };
  }
  const dup = findDuplicateKey(text);
  if (dup !== null) return { ok: false, reason: `duplicate key ${JSON.stringify(dup.slice(0, 64))}` };
  return { ok: true, value };
}

/**
 * The first key that appears twice in one object of `text` (already known to be valid JSON), or null.
 * Keys are compared decoded (`"a"` and `"\u0061"` are the same key).
 */
function findDuplicateKey(text: string): string | null {
  // One set of keys per open object; arrays push null so the stack mirrors the nesting.
  const stack: Array<Set<string> | null> = [];
  let expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      let j = i + 1;
      let escaped = false;
      for (; j < text.length; j++) {
        const d = text.charCodeAt(j);
        if (escaped) escaped = false;
        else if (d === 0x5c) escaped = true;
        else if (d === 0x22) break;
      }
      const top = stack[stack.length - 1];
      if (expectKey && top) {
        const raw = text.slice(i, j + 1);
        const key = raw.includes('\\') ? (JSON.parse(raw) as string) : raw.slice(1, -1);
        if (top.has(key)) return key;
        top.add(key);
        expectKey = false;
      }
      i = j;
    } else if (c === 0x7b /* { */) {
      stack.push(new Set());
      expectKey = true;
    } else if (c === 0x5b /* [ */) {
      stack.push(null);
      expectKey = false;
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      stack.pop();
      expectKey = false;
    } else if (c === 0x2c /* , */) {
      expectKey = stack[stack.length - 1] != null;
    }
  }
  return null;
}
