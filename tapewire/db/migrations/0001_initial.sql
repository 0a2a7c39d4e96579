-- Latest processed state per instrument, plus where in tt_raw_data it came from so a
-- processor taking over a partition resumes exactly where the last one left off.
CREATE TABLE instrument_state (
    instrument        text PRIMARY KEY,
    version           bigint      NOT NULL,
    source_partition  integer     NOT NULL,
    source_offset     bigint      NOT NULL,
    last_price        numeric,
    bid_price         numeric,
    ask_price         numeric,
    vwap              numeric,
    session_volume    numeric     NOT NULL DEFAULT 0,
    state             bytea       NOT NULL,   -- tapewire.v1.InstrumentState
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX instrument_state_by_partition ON instrument_state (source_partition);

-- OHLCV bars over trades. `version` is the instrument's version when the bar last changed;
-- upserts only ever move it forward, so a replayed batch cannot roll a bar back.
CREATE TABLE bars_1s (
    instrument   text        NOT NULL,
    start_time   timestamptz NOT NULL,
    open         numeric     NOT NULL,
    high         numeric     NOT NULL,
    low          numeric     NOT NULL,
    close        numeric     NOT NULL,
    volume       numeric     NOT NULL,
    trade_count  bigint      NOT NULL,
    version      bigint      NOT NULL,
    PRIMARY KEY (instrument, start_time)
);

CREATE TABLE bars_1m (LIKE bars_1s INCLUDING ALL);
