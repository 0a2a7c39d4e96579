// Rolling figures for the feed-health panel. Pure: callers pass the clock in (milliseconds).

/** End-to-end latencies of the last `capacity` updates, kept in a ring: memory stays fixed. */
export class LatencyWindow {
  private readonly samples: Float64Array;
  private next = 0;
  private count = 0;

  constructor(capacity = 2048) {
    this.samples = new Float64Array(capacity);
  }

  add(latencyMs: number): void {
    this.samples[this.next] = latencyMs;
    this.next = (this.next + 1) % this.samples.length;
    this.count = Math.min(this.count + 1, this.samples.length);
  }

  get size(): number {
    return this.count;
  }

  /** The q-quantile (0..1) by nearest rank, or null before the first sample. */
  quantile(q: number): number | null {
    return this.quantiles([q])[0];
  }

  /** Several quantiles from one sort (the panel asks for p50 and p99 every frame). */
  quantiles(qs: readonly number[]): (number | null)[] {
    if (this.count === 0) return qs.map(() => null);
    const sorted = this.samples.slice(0, this.count).sort();
    return qs.map((q) => sorted[Math.min(this.count - 1, Math.max(0, Math.ceil(q * this.count) - 1))]);
  }
}

/** Events per second over the last `windowMs`, counted in 100 ms buckets. */
export class RateMeter {
  private readonly buckets: Uint32Array;
  private readonly bucketMs: number;
  private lastBucket = -1;

  constructor(windowMs = 5000, bucketMs = 100) {
    this.bucketMs = bucketMs;
    this.buckets = new Uint32Array(Math.max(1, Math.round(windowMs / bucketMs)));
  }

  add(nowMs: number, n = 1): void {
    this.advance(nowMs);
    this.buckets[this.lastBucket % this.buckets.length] += n;
  }

  perSecond(nowMs: number): number {
    this.advance(nowMs);
    let total = 0;
    for (const n of this.buckets) total += n;
    return (total * 1000) / (this.buckets.length * this.bucketMs);
  }

  private advance(nowMs: number): void {
    const bucket = Math.floor(nowMs / this.bucketMs);
    if (this.lastBucket < 0) {
      this.lastBucket = bucket;
      return;
    }
    // Clear the buckets the clock moved past (all of them after a long pause).
    const steps = Math.min(bucket - this.lastBucket, this.buckets.length);
    for (let i = 1; i <= steps; i++) this.buckets[(this.lastBucket + i) % this.buckets.length] = 0;
    if (bucket > this.lastBucket) this.lastBucket = bucket;
  }
}

/** Reconnect delay: exponential from `baseMs` up to `maxMs`, with full jitter (no thundering herd). */
export function backoffMs(attempt: number, random: number, baseMs = 500, maxMs = 10_000): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt));
  return Math.round(baseMs / 2 + random * (ceiling - baseMs / 2));
}
