"""The watchlist grid as the server renders it (the dashboard's first HTML), parsed."""

from __future__ import annotations

from html.parser import HTMLParser


class GridRows(HTMLParser):
    """instrument → (version, {field: text}) of each watchlist row in server-rendered HTML."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, tuple[int, dict[str, str]]] = {}
        self._row: str | None = None
        self._field: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "tr" and found.get("data-instrument"):
            self._row = found["data-instrument"]
            self.rows[self._row] = (int(found.get("data-version") or 0), {})
        elif tag == "td" and self._row and found.get("data-field"):
            self._field = found["data-field"]

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._field = None
        elif tag == "tr":
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._row and self._field:
            cells = self.rows[self._row][1]
            cells[self._field] = cells.get(self._field, "") + data
