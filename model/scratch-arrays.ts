/**
 * Zeroed typed arrays handed out as views of a few large buffers. Each `new Float64Array(n)` beyond
 * a few elements gets its own off-heap backing store, which costs more than the arithmetic a
 * settlement does on it; one settlement needs some thirty per GPU. Views stay valid until
 * {@link reset}: the caller must not keep them past that (nothing a settlement returns refers to them).
 * The three element types are written out, not one generic pool: a shared `take` sees three array
 * types and measured 15-25% slower on the tensor-parallel attribution benchmark.
 */
export class ScratchArrays {
  private floatBuffer = new Float64Array(4096);
  private floatUsed = 0;
  private intBuffer = new Int32Array(4096);
  private intUsed = 0;
  private byteBuffer = new Uint8Array(4096);
  private byteUsed = 0;

  /** Hand out the buffers again from the start: every view handed out so far is given up. */
  reset(): void {
    this.floatUsed = 0;
    this.intUsed = 0;
    this.byteUsed = 0;
  }

  floats(length: number): Float64Array {
    if (this.floatUsed + length > this.floatBuffer.length) {
      // Views already handed out keep the old buffer alive; new ones come from a larger one.
      this.floatBuffer = new Float64Array(Math.max(2 * this.floatBuffer.length, length));
      this.floatUsed = 0;
    }
    const view = this.floatBuffer.subarray(this.floatUsed, this.floatUsed + length);
    this.floatUsed += length;
    return view.fill(0);
  }

  ints(length: number): Int32Array {
    if (this.intUsed + length > this.intBuffer.length) {
      this.intBuffer = new Int32Array(Math.max(2 * this.intBuffer.length, length));
      this.intUsed = 0;
    }
    const view = this.intBuffer.subarray(this.intUsed, this.intUsed + length);
    this.intUsed += length;
    return view.fill(0);
  }

  bytes(length: number): Uint8Array {
    if (this.byteUsed + length > this.byteBuffer.length) {
      this.byteBuffer = new Uint8Array(Math.max(2 * this.byteBuffer.length, length));
      this.byteUsed = 0;
    }
    const view = this.byteBuffer.subarray(this.byteUsed, this.byteUsed + length);
    this.byteUsed += length;
    return view.fill(0);
  }
}
