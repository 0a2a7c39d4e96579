-- Holidays of an instrument's trading calendar: trading dates of its days on which it does not
-- trade. NOT NULL with a constant default: existing rows get the empty list and PostgreSQL
-- stores the default in the catalogue, so adding it rewrites nothing.
ALTER TABLE instruments ADD COLUMN holidays date[] NOT NULL DEFAULT '{}';
