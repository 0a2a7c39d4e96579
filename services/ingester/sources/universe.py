"""The simulator's universe: real-looking instruments with the reference data a desk expects.

Most are US equities and ETFs (New York's regular session, 09:30-16:00, pre-open from 04:00,
priced in cents); among the busiest are a 24/7 crypto pair, an equity-index future whose
session opens the evening before (CME Globex, Chicago time) and a spot FX pair quoted to five
decimals. The ingester publishes the entries of the instruments it simulates to the instrument
master at start, so the rest of the suite knows them as it would a venue's reference data.

The simulator trades every instrument around the clock, whatever its calendar says: a feed for
load and demos, which shows equities trading "after hours" most of the day.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from tapewire.reference.instrument import Instrument, instrument_from_fields

# NYSE and Nasdaq holidays, 2026 and 2027, as the exchanges publish them (a holiday on a weekend
# is observed on the Friday before or the Monday after).
_US_EQUITY_HOLIDAYS = (
    "2026-01-01,2026-01-19,2026-02-16,2026-04-03,2026-05-25,2026-06-19,2026-07-03,2026-09-07,2026-11-26,"
    "2026-12-25,2027-01-01,2027-01-18,2027-02-15,2027-03-26,2027-05-31,2027-06-18,2027-07-05,2027-09-06,"
    "2027-11-25,2027-12-24"
)
# CME Globex equity index futures close for whole days only on these; on other US holidays they
# trade a shortened session, which calendars here do not model (it counts as a full one).
_CME_HOLIDAYS = "2026-04-03,2026-12-25,2027-01-01,2027-03-26,2027-12-24"
_NEW_YORK = {
    "timezone": "America/New_York",
    "hours": "09:30-16:00",
    "days": "Mon-Fri",
    "pre_open": "04:00",
    "holidays": _US_EQUITY_HOLIDAYS,
}
_GLOBEX = {
    "timezone": "America/Chicago",
    "hours": "17:00-16:00",
    "days": "Mon-Fri",
    "pre_open": "16:45",
    "holidays": _CME_HOLIDAYS,
}
_CRYPTO = {"timezone": "UTC", "hours": "24/7"}
# Spot FX trades from Sunday 17:00 to Friday 17:00 New York time: one session per day, each
# opening at the previous one's close.
_FX = {"timezone": "America/New_York", "hours": "17:00-17:00", "days": "Mon-Fri"}


@dataclass(frozen=True, slots=True)
class Listing:
    symbol: str
    name: str
    price: Decimal  # a plausible reference price, where the random walk starts
    asset_class: str = "equity"
    venue: str = "XNAS"
    currency: str = "USD"
    tick_size: Decimal = Decimal("0.01")
    trade_unit: Decimal = Decimal(100)  # sizes are whole multiples of it (a round lot)
    lot_size: Decimal = Decimal(1)
    calendar: tuple[tuple[str, str], ...] = tuple(_NEW_YORK.items())

    def instrument(self) -> Instrument:
        return instrument_from_fields(
            {
                "symbol": self.symbol,
                "name": self.name,
                "asset_class": self.asset_class,
                "currency": self.currency,
                "venue": self.venue,
                "tick_size": str(self.tick_size),
                "lot_size": str(self.lot_size),
                **dict(self.calendar),
            }
        )


def _nyse(symbol: str, name: str, price: str) -> Listing:
    return Listing(symbol, name, Decimal(price), venue="XNYS")


def _nasdaq(symbol: str, name: str, price: str) -> Listing:
    return Listing(symbol, name, Decimal(price))


# Most active first: activity falls with rank (see simulator.Market).
LISTINGS: tuple[Listing, ...] = (
    _nasdaq("NVDA", "NVIDIA Corporation", "135.40"),
    _nasdaq("TSLA", "Tesla, Inc.", "248.90"),
    Listing(
        "BTC-USD",
        "Bitcoin / US Dollar",
        Decimal("97250.00"),
        asset_class="crypto",
        venue="COINBASE",
        trade_unit=Decimal("0.001"),
        lot_size=Decimal("0.00001"),
        calendar=tuple(_CRYPTO.items()),
    ),
    _nasdaq("AAPL", "Apple Inc.", "229.80"),
    Listing(
        "ESZ6",
        "E-mini S&P 500 Dec 2026",
        Decimal("6050.25"),
        asset_class="future",
        venue="XCME",
        tick_size=Decimal("0.25"),
        trade_unit=Decimal(1),
        calendar=tuple(_GLOBEX.items()),
    ),
    _nasdaq("AMZN", "Amazon.com, Inc.", "201.20"),
    _nasdaq("MSFT", "Microsoft Corporation", "421.50"),
    Listing(
        "EURUSD",
        "Euro / US Dollar",
        Decimal("1.08245"),
        asset_class="fx",
        venue="XOFF",
        tick_size=Decimal("0.00001"),
        trade_unit=Decimal(100_000),
        lot_size=Decimal(1_000),
        calendar=tuple(_FX.items()),
    ),
    _nasdaq("META", "Meta Platforms, Inc.", "562.30"),
    _nasdaq("AMD", "Advanced Micro Devices, Inc.", "139.70"),
    _nasdaq("GOOGL", "Alphabet Inc. Class A", "174.60"),
    Listing("SPY", "SPDR S&P 500 ETF Trust", Decimal("589.10"), asset_class="etf", venue="ARCX"),
    Listing("QQQ", "Invesco QQQ Trust", Decimal("503.20"), asset_class="etf"),
    _nasdaq("AVGO", "Broadcom Inc.", "168.90"),
    _nasdaq("NFLX", "Netflix, Inc.", "752.40"),
    _nasdaq("INTC", "Intel Corporation", "22.15"),
    _nyse("F", "Ford Motor Company", "11.02"),
    _nyse("BAC", "Bank of America Corporation", "42.35"),
    _nasdaq("PLTR", "Palantir Technologies Inc.", "61.80"),
    _nyse("UBER", "Uber Technologies, Inc.", "74.90"),
    _nyse("JPM", "JPMorgan Chase & Co.", "221.70"),
    _nyse("LLY", "Eli Lilly and Company", "871.00"),
    _nasdaq("COST", "Costco Wholesale Corporation", "902.50"),
    _nyse("BRK.B", "Berkshire Hathaway Inc. Class B", "461.20"),
    _nyse("V", "Visa Inc.", "289.60"),
    _nyse("UNH", "UnitedHealth Group Incorporated", "561.40"),
    _nyse("XOM", "Exxon Mobil Corporation", "116.30"),
    _nyse("JNJ", "Johnson & Johnson", "158.20"),
    _nasdaq("WMT", "Walmart Inc.", "84.70"),
    _nyse("MA", "Mastercard Incorporated", "512.80"),
    _nyse("PG", "The Procter & Gamble Company", "169.40"),
    _nyse("HD", "The Home Depot, Inc.", "401.30"),
    _nyse("CVX", "Chevron Corporation", "154.90"),
    _nyse("ABBV", "AbbVie Inc.", "189.50"),
    _nyse("KO", "The Coca-Cola Company", "64.80"),
    _nasdaq("PEP", "PepsiCo, Inc.", "160.10"),
    _nyse("MRK", "Merck & Co., Inc.", "99.80"),
    _nasdaq("ADBE", "Adobe Inc.", "498.70"),
    _nyse("CRM", "Salesforce, Inc.", "301.60"),
    _nasdaq("CSCO", "Cisco Systems, Inc.", "58.40"),
    _nyse("ORCL", "Oracle Corporation", "171.20"),
    _nyse("TMO", "Thermo Fisher Scientific Inc.", "531.90"),
    _nyse("ABT", "Abbott Laboratories", "115.30"),
    _nyse("DIS", "The Walt Disney Company", "99.60"),
    _nyse("NKE", "NIKE, Inc.", "75.20"),
    _nyse("MCD", "McDonald's Corporation", "298.70"),
    _nyse("WFC", "Wells Fargo & Company", "62.40"),
    _nyse("C", "Citigroup Inc.", "68.10"),
    _nyse("GS", "The Goldman Sachs Group, Inc.", "561.70"),
    _nyse("MS", "Morgan Stanley", "125.80"),
    _nyse("T", "AT&T Inc.", "22.40"),
    _nyse("VZ", "Verizon Communications Inc.", "42.10"),
    _nyse("PFE", "Pfizer Inc.", "26.30"),
    _nyse("BA", "The Boeing Company", "158.60"),
    _nyse("CAT", "Caterpillar Inc.", "379.40"),
    _nyse("GE", "GE Aerospace", "181.20"),
    _nyse("IBM", "International Business Machines Corporation", "221.90"),
    _nasdaq("QCOM", "QUALCOMM Incorporated", "159.80"),
    _nasdaq("TXN", "Texas Instruments Incorporated", "199.50"),
    _nasdaq("HON", "Honeywell International Inc.", "214.70"),
    _nyse("UPS", "United Parcel Service, Inc.", "129.90"),
    _nasdaq("SBUX", "Starbucks Corporation", "95.10"),
    _nasdaq("PYPL", "PayPal Holdings, Inc.", "79.60"),
    _nyse("GM", "General Motors Company", "51.70"),
    _nasdaq("SHOP", "Shopify Inc.", "102.40"),
)
BY_SYMBOL = {listing.symbol: listing for listing in LISTINGS}


def generated(symbol: str, venue: str) -> Listing:
    """A listing for a generated name (SIM0066, ...) beyond the built-in ones: an equity on the
    simulator's own venue, priced in cents; its reference price is drawn by the market."""
    return Listing(symbol, f"Simulated instrument {symbol[3:]}", Decimal(0), venue=venue)
