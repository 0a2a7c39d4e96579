"use client";

import { useRef, type KeyboardEvent } from "react";

import type { Book } from "@/lib/book";
import { decimal, direction, percent, rounded, signed, volume } from "@/lib/format";
import { COLUMNS, nextSort, type ColumnKey, type Sort } from "@/lib/grid";
import type { InstrumentState } from "@/lib/types";

interface Props {
  book: Book;
  rows: string[];
  selected: string | null;
  sort: Sort;
  onSort: (sort: Sort) => void;
  onSelect: (instrument: string) => void;
  onRemove: (instrument: string) => void;
}

function shown(state: InstrumentState, key: ColumnKey): string {
  switch (key) {
    case "instrument":
      return state.instrument;
    case "change":
      return signed(state.change);
    case "change_pct":
      return percent(state.change_pct);
    case "vwap":
      return rounded(state.vwap);
    case "session_volume":
      return volume(state.session_volume);
    default:
      return decimal(state[key]);
  }
}

function tone(state: InstrumentState): string {
  if (!state.change || state.change === "0") return "";
  return state.change.startsWith("-") ? "down" : "up";
}

/** One cell; when its value changed with the latest version it flashes green (up) or red (down).
 * The span is keyed by version so that every change restarts the animation. */
function Cell({ state, previous, column }: { state: InstrumentState; previous?: InstrumentState; column: ColumnKey }) {
  const text = shown(state, column);
  if (column === "instrument" || !previous) return <span>{text}</span>;
  const before = previous[column];
  const now = state[column];
  if (before === now) return <span>{text}</span>;
  const moved =
    typeof now === "number" || typeof before === "number"
      ? Math.sign(Number(now) - Number(before))
      : direction(before as string | null, now as string | null);
  const flash = moved > 0 ? "flash-up" : moved < 0 ? "flash-down" : "";
  return (
    <span key={state.version} className={flash}>
      {text}
    </span>
  );
}

export default function Watchlist({ book, rows, selected, sort, onSort, onSelect, onRemove }: Props) {
  const body = useRef<HTMLTableSectionElement>(null);

  // Arrow keys move between rows, Enter or Space opens the chart, Delete removes the row.
  function onKeyDown(event: KeyboardEvent<HTMLTableRowElement>, instrument: string, index: number) {
    const step = event.key === "ArrowDown" ? 1 : event.key === "ArrowUp" ? -1 : 0;
    if (step) {
      event.preventDefault();
      const target = body.current?.querySelectorAll<HTMLTableRowElement>("tr")[index + step];
      target?.focus();
    } else if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      onSelect(instrument);
    } else if (event.key === "Delete") {
      onRemove(instrument);
    }
  }

  return (
    <div className="grid-scroll">
      <table className="grid" data-testid="watchlist" aria-label="Watchlist">
        <thead>
          <tr>
            {COLUMNS.map((column) => (
              <th
                key={column.key}
                scope="col"
                className={column.numeric ? "num" : ""}
                aria-sort={sort.key === column.key ? (sort.descending ? "descending" : "ascending") : "none"}
              >
                <button type="button" onClick={() => onSort(nextSort(sort, column.key))}>
                  {column.label}
                  <span aria-hidden="true">{sort.key === column.key ? (sort.descending ? " ▾" : " ▴") : ""}</span>
                </button>
              </th>
            ))}
            <th scope="col">
              <span className="sr-only">Remove</span>
            </th>
          </tr>
        </thead>
        <tbody ref={body}>
          {rows.map((instrument, index) => {
            const state = book.get(instrument);
            const previous = book.previous(instrument);
            return (
              <tr
                key={instrument}
                tabIndex={0}
                data-instrument={instrument}
                data-version={state?.version ?? 0}
                aria-selected={selected === instrument}
                className={selected === instrument ? "selected" : ""}
                onClick={() => onSelect(instrument)}
                onKeyDown={(event) => onKeyDown(event, instrument, index)}
              >
                {COLUMNS.map((column) => (
                  <td
                    key={column.key}
                    data-field={column.key}
                    className={`${column.numeric ? "num" : "name"} ${column.key.startsWith("change") && state ? tone(state) : ""}`}
                  >
                    {state ? (
                      <Cell state={state} previous={previous} column={column.key} />
                    ) : column.key === "instrument" ? (
                      instrument
                    ) : (
                      "—"
                    )}
                  </td>
                ))}
                <td className="remove">
                  <button
                    type="button"
                    aria-label={`Remove ${instrument}`}
                    title="Remove from watchlist"
                    onClick={(event) => {
                      event.stopPropagation();
                      onRemove(instrument);
                    }}
                  >
                    ×
                  </button>
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
      {rows.length === 0 && <p className="empty">No instruments: add one above.</p>}
    </div>
  );
}
