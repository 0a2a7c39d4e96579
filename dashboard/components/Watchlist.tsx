"use client";

import { useRef, type KeyboardEvent } from "react";

import type { Book } from "@/lib/book";
import { DASH, direction } from "@/lib/format";
import { COLUMNS, cellText, cellTitle, changeFromOpen, changeTone, nextSort, type Column, type Sort } from "@/lib/grid";
import { decimalsOf, marketStatusLabel, marketStatusTitle, type DetailsIndex } from "@/lib/instruments";
import type { InstrumentDetails, InstrumentState } from "@/lib/types";

interface Props {
  book: Book;
  details: DetailsIndex;
  rows: string[];
  selected: string | null;
  sort: Sort;
  onSort: (sort: Sort) => void;
  onSelect: (instrument: string) => void;
  onRemove: (instrument: string) => void;
}

/** One cell; when its value changed with the latest version it flashes green (up) or red (down).
 * The span is keyed by version so that every change restarts the animation. */
function Cell({ text, state, previous, column }: { text: string; state: InstrumentState; previous?: InstrumentState; column: Column }) {
  if (!previous) return <span>{text}</span>;
  const before = previous[column.key];
  const now = state[column.key];
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

/** The symbol, its market's status and its name (secondary). */
function InstrumentCell({ instrument, detail }: { instrument: string; detail?: InstrumentDetails }) {
  const status = detail ? marketStatusLabel(detail.market_status) : null;
  return (
    <td data-field="instrument" className="name">
      <span className="symbol">{instrument}</span>
      {detail && status && (
        <span
          className={`market-status market-${detail.market_status}`}
          data-field="market_status"
          data-testid="market-status"
          data-status={detail.market_status}
          title={marketStatusTitle(detail)}
        >
          {status}
        </span>
      )}
      {detail?.name && (
        <span className="instrument-name" title={detail.name}>
          {detail.name}
        </span>
      )}
    </td>
  );
}

/** A numeric cell at the instrument's decimals; the change columns carry their tone and, when
 * the change is from this session's open (no previous close yet), a marker and a tooltip saying so. */
function NumberCell(props: { column: Column; state?: InstrumentState; previous?: InstrumentState; decimals: number | undefined }) {
  const { column, state, previous, decimals } = props;
  const isChange = column.key === "change" || column.key === "change_pct";
  const fromOpen = isChange && state !== undefined && changeFromOpen(state);
  const tone = isChange && state ? changeTone(state, decimals) : "";
  return (
    <td
      data-field={column.key}
      data-basis={isChange && state?.change_basis ? state.change_basis : undefined}
      title={state ? cellTitle(state, column) : undefined}
      className={["num", tone, fromOpen ? "from-open" : ""].filter(Boolean).join(" ")}
    >
      {state ? <Cell text={cellText(state, column, decimals)} state={state} previous={previous} column={column} /> : DASH}
    </td>
  );
}

export default function Watchlist({ book, details, rows, selected, sort, onSort, onSelect, onRemove }: Props) {
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
                title={column.title}
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
            const detail = details.get(instrument);
            const decimals = decimalsOf(detail);
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
                {COLUMNS.map((column) =>
                  column.key === "instrument" ? (
                    <InstrumentCell key={column.key} instrument={instrument} detail={detail} />
                  ) : (
                    <NumberCell key={column.key} column={column} state={state} previous={previous} decimals={decimals} />
                  ),
                )}
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
