/**
 * A one-pass reader of a JSON answer too large to keep (logprobs, prompt_logprobs): it keeps only
 * the top-level members a record needs and counts the characters of generated text, chunk by
 * chunk, so that such an answer still gets its exact usage, wherever the upstream put it (vLLM
 * writes prompt_logprobs after usage, so a bounded tail would not do).
 */

/** Top-level members kept whole (they are small): what jsonOutcome reads of an answer. */
const KEPT: ReadonlySet<string> = new Set(['id', 'model', 'usage', 'object', 'status', 'error']);
/** Keys whose string values are generated text, as the parsed path counts them (content, text, tool-call arguments). */
const TEXT: ReadonlySet<string> = new Set(['content', 'text', 'arguments']);
const REASONING: ReadonlySet<string> = new Set(['reasoning_content', 'reasoning']);
/** A kept member larger than this is dropped (a usage object is a few hundred bytes). */
const MAX_KEPT_BYTES = 64 * 1024;
/** Longer keys are none of the above. */
const MAX_KEY = 32;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const isJsonSpace = (byte: number): boolean => byte === 0x20 || byte === 0x09 || byte === 0x0a || byte === 0x0d;

/** What the scan found. */
export interface ScannedAnswer {
  /** The body is one JSON object, brackets balanced, nothing after it. */
  readonly complete: boolean;
  /** The kept top-level members that parsed. */
  readonly members: Record<string, unknown>;
  /** Characters of generated text (reasoning apart) and of reasoning, as JavaScript counts them (UTF-16 units). */
  readonly chars: number;
  readonly reasoningChars: number;
  /** The finish_reason of each choice (`choices[i].finish_reason` strings), in order. */
  readonly finishReasons: readonly string[];
}

export class JsonAnswerScanner {
  /** Open containers, innermost last: true for an object. */
  private readonly objects: boolean[] = [];
  /** The key of the member being read, per open container (null in arrays). */
  private readonly keys: (string | null)[] = [];
  private inString = false;
  private escaped = false;
  /** Hex digits of a \u escape still to skip. */
  private hex = 0;
  /** The next string in the innermost object is a key. */
  private expectKey = false;
  private readingKey = false;
  private key = '';
  private keyUsable = true;
  /** What the string being read counts toward: 0 nothing, 1 text, 2 reasoning. */
  private counting = 0;
  /** The string being read is a choice's finish_reason (kept, up to a bound). */
  private readingFinish = false;
  private finish = '';
  private readonly finishReasons: string[] = [];
  private chars = 0;
  private reasoningChars = 0;
  /** The kept member being captured (its value's bytes, whitespace included), or null. */
  private capturing: string | null = null;
  private captured: Buffer[] = [];
  private capturedBytes = 0;
  private readonly members: Record<string, unknown> = {};
  private started = false;
  private ended = false;
  private broken = false;

  push(chunk: Buffer): void {
    let from = 0; // where this chunk's part of a capture starts
    for (let i = 0; i < chunk.length; i++) {
      const b = chunk[i] as number;
      if (this.inString) {
        if (this.hex > 0) this.hex--;
        else if (this.escaped) {
          this.escaped = false;
          if (b === 0x75) this.hex = 4;
        } else if (b === BACKSLASH) {
          this.escaped = true;
          this.count(1); // an escape is one character
          this.keyUsable = false; // keys that matter are plain ASCII
          if (this.readingFinish) this.finish += '\\'; // no reason that matters is escaped
        } else if (b === QUOTE) this.endString();
        else if (this.readingKey) {
          if (this.key.length < MAX_KEY) this.key += String.fromCharCode(b);
          else this.keyUsable = false;
        } else if (this.readingFinish) {
          if (this.finish.length <= MAX_KEY) this.finish += String.fromCharCode(b);
        } else if (this.counting !== 0 && (b & 0xc0) !== 0x80) this.count(b >= 0xf0 ? 2 : 1); // a 4-byte character is two UTF-16 units
        continue;
      }
      if (isJsonSpace(b)) continue;
      if (this.ended || (!this.started && b !== 0x7b)) {
        this.broken = true; // something after the object, or a body that is not one
        return;
      }
      const depth = this.objects.length;
      const inObject = depth > 0 && this.objects[depth - 1] === true;
      switch (b) {
        case QUOTE:
          this.inString = true;
          this.readingKey = inObject && this.expectKey;
          if (this.readingKey) {
            this.key = '';
            this.keyUsable = true;
            this.counting = 0;
          } else {
            const key = inObject ? this.keys[depth - 1] : null;
            this.counting = key == null ? 0 : REASONING.has(key) ? 2 : TEXT.has(key) ? 1 : 0;
            // {"choices": [{"finish_reason": "..."}]}: an object in an array in the answer.
            this.readingFinish = key === 'finish_reason' && depth === 3 && this.keys[0] === 'choices';
            this.finish = '';
          }
          break;
        case 0x7b: // {
        case 0x5b: // [
          if (depth === 0) this.started = true;
          this.objects.push(b === 0x7b);
          this.keys.push(null);
          this.expectKey = b === 0x7b;
          break;
        case 0x7d: // }
        case 0x5d: // ]
          if (depth === 0 || this.objects[depth - 1] !== (b === 0x7d)) {
            this.broken = true;
            return;
          }
          if (depth === 1) {
            if (this.capturing !== null) this.endCapture(chunk.subarray(from, i));
            this.ended = true;
          }
          this.objects.pop();
          this.keys.pop();
          this.expectKey = false;
          break;
        case 0x3a: // :
          this.expectKey = false;
          if (depth === 1 && this.capturing === null && KEPT.has(this.keys[0] ?? '')) {
            this.capturing = this.keys[0] as string;
            this.captured = [];
            this.capturedBytes = 0;
            from = i + 1;
          }
          break;
        case 0x2c: // ,
          if (depth === 1 && this.capturing !== null) this.endCapture(chunk.subarray(from, i));
          this.expectKey = inObject;
          break;
      }
    }
    if (this.capturing !== null) this.keep(from === 0 ? chunk : chunk.subarray(from));
  }

  /** The result, once the whole body has been pushed. */
  result(): ScannedAnswer {
    return { complete: this.ended && !this.broken, members: this.members, chars: this.chars, reasoningChars: this.reasoningChars, finishReasons: this.finishReasons };
  }

  private count(units: number): void {
    if (this.counting === 1) this.chars += units;
    else if (this.counting === 2) this.reasoningChars += units;
  }

  private endString(): void {
    this.inString = false;
    if (this.readingFinish) {
      this.readingFinish = false;
      this.finishReasons.push(this.finish);
    }
    if (!this.readingKey) return;
    this.readingKey = false;
    this.keys[this.keys.length - 1] = this.keyUsable ? this.key : null;
  }

  private keep(part: Buffer): void {
    if (this.capturedBytes > MAX_KEPT_BYTES) return;
    this.capturedBytes += part.length;
    this.captured.push(Buffer.from(part)); // a copy: the chunk itself is not held
  }

  private endCapture(last: Buffer): void {
    this.keep(last);
    const name = this.capturing as string;
    this.capturing = null;
    if (this.capturedBytes > MAX_KEPT_BYTES) return;
    try {
      this.members[name] = JSON.parse(Buffer.concat(this.captured).toString('utf8'));
    } catch {
      // left out: the record goes without it
    }
    this.captured = [];
  }
}
