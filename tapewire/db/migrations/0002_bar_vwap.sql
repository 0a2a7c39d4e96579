-- Session VWAP of the instrument as of each bar's `version`, so a chart can overlay VWAP on
-- historical candles without replaying states. Nullable because bars written before this
-- migration have no VWAP to recover (the states that made them are gone), and because a state
-- may not know its VWAP yet. Adding a nullable column without a default only touches the
-- catalogue: no table rewrite, so the lock is brief even on a large history.
-- bars_1m was created LIKE bars_1s, which copies columns once and does not follow later
-- changes: both tables are altered.
ALTER TABLE bars_1s ADD COLUMN vwap numeric;
ALTER TABLE bars_1m ADD COLUMN vwap numeric;
