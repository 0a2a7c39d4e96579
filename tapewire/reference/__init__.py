"""Reference data: the instrument master (what each instrument is, how its prices are shown, when
it trades) and the trading calendars that decide where one session ends and the next begins.

- `calendar`: trading calendars and the session and market status at an instant (pure).
- `instrument`: an entry of the master, its validation and its wire form (pure).
- `files`: reference files (CSV or JSON lines) read line by line with a clear error per bad line.
- `master`: the master as every service holds it, fed from the compacted topic tt_instruments.
- `python -m tapewire.reference load FILE`: validate a file and publish it to the master.
"""
