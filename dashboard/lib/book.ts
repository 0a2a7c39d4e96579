// The states the page holds, by instrument, and the rule that keeps them honest: every update
// must be exactly the next version, unless the server said it skipped some (conflated, resync).
// Pure: no I/O, no clocks; the feed feeds it, the tests drive it directly.

import type { InstrumentState, Snapshot } from "./types";

export type Applied = "applied" | "stale" | "gap";

export class Book {
  private readonly states = new Map<string, InstrumentState>();
  /** The state each instrument had before its latest update: which way a value moved. */
  private readonly before = new Map<string, InstrumentState>();
  /** Instruments whose next update may skip versions (the server said it conflated them). */
  private readonly skipping = new Set<string>();
  /** Versions that went missing without the server saying so: the count the page must keep at 0. */
  gaps = 0;
  /** Versions the server replayed from history after a reconnect. */
  resumed = 0;

  constructor(initial: readonly InstrumentState[] = []) {
    for (const state of initial) this.states.set(state.instrument, state);
  }

  get(instrument: string): InstrumentState | undefined {
    return this.states.get(instrument);
  }

  previous(instrument: string): InstrumentState | undefined {
    return this.before.get(instrument);
  }

  all(): InstrumentState[] {
    return [...this.states.values()];
  }

  /** instrument → the version held: what a reconnect asks to resume from. */
  since(instruments: readonly string[]): Record<string, number> {
    const since: Record<string, number> = {};
    for (const name of instruments) {
      const held = this.states.get(name);
      if (held) since[name] = held.version;
    }
    return since;
  }

  /** A snapshot replaces what it lists; a resumed range is counted and its updates follow. */
  applySnapshot(snapshot: Snapshot): void {
    for (const state of snapshot.states) {
      const held = this.states.get(state.instrument);
      if (!held || state.version >= held.version) this.states.set(state.instrument, state);
      this.skipping.delete(state.instrument);
    }
    for (const range of Object.values(snapshot.resumed)) {
      this.resumed += Math.max(0, range.to - range.from + 1);
    }
  }

  /** The server skipped intermediate versions of these on purpose; the next one may jump. */
  markConflated(instruments: readonly string[]): void {
    for (const name of instruments) this.skipping.add(name);
  }

  /** What `applyUpdate` would make of `state`, without applying it. */
  classify(state: InstrumentState): Applied {
    const held = this.states.get(state.instrument);
    if (held && state.version <= held.version) return "stale";
    // A first state we never saw may start anywhere (the server sent it as a snapshot); after
    // that, anything but the next version is a gap, unless the server announced the jump.
    if (held && state.version !== held.version + 1 && !this.skipping.has(state.instrument)) return "gap";
    return "applied";
  }

  /** Count the versions between the one held and `state` as lost without notice. */
  recordGap(state: InstrumentState): void {
    const held = this.states.get(state.instrument);
    if (held && state.version > held.version + 1) this.gaps += state.version - held.version - 1;
  }

  applyUpdate(state: InstrumentState): Applied {
    const result = this.classify(state);
    if (result === "stale") return result;
    if (result === "gap") this.recordGap(state);
    const held = this.states.get(state.instrument);
    this.skipping.delete(state.instrument);
    if (held) this.before.set(state.instrument, held);
    this.states.set(state.instrument, state);
    return result;
  }

  forget(instrument: string): void {
    this.states.delete(instrument);
    this.before.delete(instrument);
    this.skipping.delete(instrument);
  }
}
