-- The instrument master (tapewire/reference), for queries: history_writer keeps it in step with
-- the compacted topic tt_instruments, which stays the source of truth (this table can always be
-- rebuilt from it). The calendar is kept as its text fields, exactly as reference files and
-- the API spell them.
CREATE TABLE instruments (
    symbol      text PRIMARY KEY,
    name        text NOT NULL,
    asset_class text NOT NULL,
    currency    text NOT NULL,
    venue       text NOT NULL,
    tick_size   numeric NOT NULL,
    decimals    smallint NOT NULL,
    lot_size    numeric NOT NULL,
    timezone    text NOT NULL,
    hours       text NOT NULL,
    days        smallint[] NOT NULL,
    pre_open    text NOT NULL DEFAULT '',
    updated_at  timestamptz NOT NULL DEFAULT now()
);
-- Search by name is a case-insensitive substring match over a few thousand rows: a scan is
-- cheap, and the filter by asset class has its index.
CREATE INDEX instruments_asset_class ON instruments (asset_class);
