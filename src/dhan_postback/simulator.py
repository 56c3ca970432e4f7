"""Realistic, reproducible order lifecycles: the postbacks a trading day would produce.

Everything comes from one ``random.Random(seed)`` and a trading date: no global state, no wall
clock, so the same seed gives the same orders, byte for byte, on any machine. Every lifecycle
is legal by :mod:`dhan_postback.lifecycle`, every update passes
:func:`~dhan_postback.payload.validate_strict`.

What it models (one :class:`OrderKind` per scenario):

* market orders (sometimes filled before a ``PENDING`` is posted: ``TRANSIT -> TRADED``),
  limit orders with several partial fills, limit orders that expire at the close, modified
  orders, user cancels, rejections, stop-loss and stop-loss-market orders, IOC orders,
  after-market orders, index options and commodity/currency futures;
* cover orders (``CO``): an ``ENTRY_LEG`` carrying the stop-loss ``triggerPrice``, then a
  ``STOP_LOSS_LEG``;
* bracket orders (``BO``): an ``ENTRY_LEG``, then a ``TARGET_LEG`` and a ``STOP_LOSS_LEG`` of
  which one trades and the other is cancelled. **Legs share the entry's ``orderId``** and
  differ by ``legName``, as on the broker's order book (its super-order API addresses a leg as
  order id plus leg name). Each leg is its own lifecycle (see :func:`lifecycle.order_key`).

Conventions worth knowing:

* Times are IST wall-clock strings inside each segment's session (equities and F&O 09:15 to
  15:30, NSE currency 09:00 to 17:00, MCX 09:00 to 23:30); a ``DAY`` order that is still open
  at the close is ``EXPIRED`` at exactly the close. After-market orders are created before the
  open and reach the exchange at the open. Exchange holidays are not modelled; a weekend
  ``start`` moves to the next Monday.
* ``exchangeTime`` is when the order reached the exchange. Before that (``TRANSIT``, and
  orders the broker's risk checks refuse) it is ``0001-01-01 00:00:00``, the sentinel the
  broker's API has been seen to use for "never at the exchange".
* NSE and BSE equity security ids are the real ones (RELIANCE 2885, TCS 11536, ...; BSE scrip
  codes); derivative security ids are illustrative, since the real ones change with every
  contract. Lot sizes, tick sizes and freeze limits are those of early 2025.
* Rejections carry descriptions shaped like the broker's (``RMS:<orderId>:...`` from its risk
  system, ``EXCH: ...`` from the exchange, with code ``0``); the numeric RMS codes are
  illustrative, the broker publishes no table of them.
"""

from __future__ import annotations

import calendar
import enum
import heapq
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any, Final

from .payload import (
    ExchangeSegment,
    LegName,
    OptionType,
    OrderStatus,
    OrderType,
    OrderUpdate,
    ProductType,
    TransactionType,
    Validity,
    dumps,
)
from .wire import DEFAULT_CLIENTS, IST, NO_DATE, TIME_FORMAT

__all__ = [
    "DEFAULT_CLIENTS",
    "DEFAULT_DATE",
    "EQUITIES",
    "FUTURES",
    "INDEX_OPTIONS",
    "NOT_AT_EXCHANGE",
    "SESSIONS",
    "Contract",
    "FutureSpec",
    "OptionUnderlying",
    "OrderKind",
    "Session",
    "SimulatedOrder",
    "Simulator",
    "interleave",
    "with_quirks",
]

DEFAULT_DATE: Final = date(2025, 1, 15)
"""A Wednesday; any date works (weekends move to the next Monday)."""

NOT_AT_EXCHANGE: Final = NO_DATE
"""``exchangeTime`` of an order that has not reached the exchange."""

_MONTHS: Final = (
    "Jan",
    "Feb",
    "Mar",
    "Apr",
    "May",
    "Jun",
    "Jul",
    "Aug",
    "Sep",
    "Oct",
    "Nov",
    "Dec",
)


class OrderKind(enum.StrEnum):
    """The scenario a simulated order plays out."""

    MARKET = "MARKET"
    LIMIT = "LIMIT"
    LIMIT_EXPIRED = "LIMIT_EXPIRED"
    MODIFIED = "MODIFIED"
    CANCELLED = "CANCELLED"
    REJECTED = "REJECTED"
    STOP_LOSS = "STOP_LOSS"
    STOP_LOSS_MARKET = "STOP_LOSS_MARKET"
    IOC = "IOC"
    COVER = "COVER"
    BRACKET = "BRACKET"
    AFTER_MARKET = "AFTER_MARKET"
    OPTION = "OPTION"
    FUTURE = "FUTURE"


@dataclass(frozen=True, slots=True)
class SimulatedOrder:
    """One order's whole life: every update the broker would post, in order."""

    kind: OrderKind
    updates: list[OrderUpdate]

    @property
    def final(self) -> OrderUpdate:
        """The last update (for a bracket order, the last leg's)."""
        return self.updates[-1]

    @property
    def order_id(self) -> str:
        return self.updates[0].order_id


# --------------------------------------------------------------------------------------------
# The market: sessions and instruments.


@dataclass(frozen=True, slots=True)
class Session:
    open: time
    close: time


SESSIONS: Final[dict[ExchangeSegment, Session]] = {
    ExchangeSegment.NSE_EQ: Session(time(9, 15), time(15, 30)),
    ExchangeSegment.BSE_EQ: Session(time(9, 15), time(15, 30)),
    ExchangeSegment.NSE_FNO: Session(time(9, 15), time(15, 30)),
    ExchangeSegment.NSE_CURRENCY: Session(time(9, 0), time(17, 0)),
    ExchangeSegment.MCX_COMM: Session(time(9, 0), time(23, 30)),
}


@dataclass(frozen=True, slots=True)
class Contract:
    """One tradable thing: an equity, or one derivative contract."""

    trading_symbol: str
    security_id: str
    segment: ExchangeSegment
    tick: float
    lot: int
    reference_price: float
    expiry: date | None = None
    option_type: OptionType | None = None
    strike: float = 0.0
    freeze_quantity: int = 0

    @property
    def is_derivative(self) -> bool:
        return self.expiry is not None


@dataclass(frozen=True, slots=True)
class OptionUnderlying:
    """An index whose options are simulated; strikes are chosen near ``spot`` each order."""

    name: str
    spot: float
    strike_step: float
    lot: int
    freeze_quantity: int
    time_value: float
    id_base: int
    expiry: Callable[[date], date]


@dataclass(frozen=True, slots=True)
class FutureSpec:
    name: str
    segment: ExchangeSegment
    security_id: str
    tick: float
    lot: int
    price: float
    expiry: Callable[[date], date]


def _last_weekday_of_month(year: int, month: int, weekday: int) -> date:
    last = date(year, month, calendar.monthrange(year, month)[1])
    return last - timedelta(days=(last.weekday() - weekday) % 7)


def _next_month(day: date) -> tuple[int, int]:
    return (day.year + 1, 1) if day.month == 12 else (day.year, day.month + 1)


def _weekly_thursday(day: date) -> date:
    """The first Thursday on or after ``day`` (NIFTY's weekly expiry in early 2025)."""
    return day + timedelta(days=(3 - day.weekday()) % 7)


def _monthly_last_thursday(day: date) -> date:
    """The last Thursday of the month, or of the next month once it has passed."""
    expiry = _last_weekday_of_month(day.year, day.month, 3)
    if expiry < day:
        expiry = _last_weekday_of_month(*_next_month(day), 3)
    return expiry


def _monthly_on(day_of_month: int) -> Callable[[date], date]:
    """An expiry on a fixed day of the month (MCX style), this month or the next."""

    def expiry(day: date) -> date:
        this = date(day.year, day.month, day_of_month)
        return this if this >= day else date(*_next_month(day), day_of_month)

    return expiry


def _currency_monthly(day: date) -> date:
    """Two working days before the month's last working day (NSE currency futures)."""

    def for_month(year: int, month: int) -> date:
        current = date(year, month, calendar.monthrange(year, month)[1])
        while current.weekday() >= 5:
            current -= timedelta(days=1)
        for _ in range(2):
            current -= timedelta(days=1)
            while current.weekday() >= 5:
                current -= timedelta(days=1)
        return current

    expiry = for_month(day.year, day.month)
    return expiry if expiry >= day else for_month(*_next_month(day))


def _stock(symbol: str, security_id: str, segment: ExchangeSegment, price: float) -> Contract:
    return Contract(symbol, security_id, segment, tick=0.05, lot=1, reference_price=price)


EQUITIES: Final[tuple[Contract, ...]] = (
    _stock("RELIANCE", "2885", ExchangeSegment.NSE_EQ, 1270.0),
    _stock("TCS", "11536", ExchangeSegment.NSE_EQ, 4150.0),
    _stock("INFY", "1594", ExchangeSegment.NSE_EQ, 1950.0),
    _stock("HDFCBANK", "1333", ExchangeSegment.NSE_EQ, 1650.0),
    _stock("SBIN", "3045", ExchangeSegment.NSE_EQ, 765.0),
    _stock("ICICIBANK", "4963", ExchangeSegment.NSE_EQ, 1250.0),
    _stock("ITC", "1660", ExchangeSegment.NSE_EQ, 445.0),
    _stock("RELIANCE", "500325", ExchangeSegment.BSE_EQ, 1270.0),
    _stock("TCS", "532540", ExchangeSegment.BSE_EQ, 4150.0),
    _stock("INFY", "500209", ExchangeSegment.BSE_EQ, 1950.0),
    _stock("HDFCBANK", "500180", ExchangeSegment.BSE_EQ, 1650.0),
)
"""NSE and BSE equities with their real security ids (BSE: scrip codes)."""

INDEX_OPTIONS: Final[tuple[OptionUnderlying, ...]] = (
    OptionUnderlying("NIFTY", 23200.0, 50.0, 75, 1800, 120.0, 35000, _weekly_thursday),
    OptionUnderlying("BANKNIFTY", 49500.0, 100.0, 30, 900, 300.0, 45000, _monthly_last_thursday),
)

FUTURES: Final[tuple[FutureSpec, ...]] = (
    FutureSpec("CRUDEOIL", ExchangeSegment.MCX_COMM, "430106", 1.0, 100, 6650.0, _monthly_on(19)),
    FutureSpec("GOLDM", ExchangeSegment.MCX_COMM, "431522", 1.0, 10, 78500.0, _monthly_on(5)),
    FutureSpec(
        "USDINR", ExchangeSegment.NSE_CURRENCY, "10093", 0.0025, 1000, 86.4, _currency_monthly
    ),
)


def _symbol_month(expiry: date) -> str:
    return f"{_MONTHS[expiry.month - 1]}{expiry.year}"


def _on_tick(value: float, tick: float) -> float:
    """``value`` rounded to the nearest multiple of ``tick`` (never below one tick)."""
    ticks = max(1, round(value / tick))
    return round(ticks * tick, 4)


# --------------------------------------------------------------------------------------------
# Rejections.


@dataclass(frozen=True, slots=True)
class _Rejection:
    code: str
    description: str
    at_exchange: bool


_EXCHANGE_REFUSALS: Final = (
    "EXCH: Order price is outside the permitted operating range",
    "EXCH: Security is not permitted to trade in this session",
    "EXCH: Order entry rejected, trading member blocked for the segment",
)


# --------------------------------------------------------------------------------------------
# One order being written down, one snapshot at a time.


class _Timeline:
    """The updates of one order, and the clock they are stamped with."""

    def __init__(self, rng: random.Random, start: datetime, close: datetime, lot: int) -> None:
        self.rng = rng
        self.clock = start
        self.close = close
        self.lot = lot
        self.updates: list[OrderUpdate] = []

    def stamp(self) -> str:
        return self.clock.strftime(TIME_FORMAT)

    def wait(self, low: int, high: int) -> None:
        """Let ``low`` to ``high`` seconds pass, staying inside the session."""
        later = self.clock + timedelta(seconds=self.rng.randint(low, high))
        self.clock = max(self.clock, min(later, self.close - timedelta(seconds=1)))

    def at_close(self) -> None:
        self.clock = max(self.clock, self.close)

    def emit(self, previous: OrderUpdate, **changes: Any) -> OrderUpdate:
        update = previous.replace(update_time=self.stamp(), **changes)
        self.updates.append(update)
        return update

    def cancel(self, order: OrderUpdate) -> list[OrderUpdate]:
        """The order's ``CANCELLED`` (by the user, or its other leg), and all its updates."""
        self.emit(order, order_status=OrderStatus.CANCELLED)
        return self.updates

    def place(self, order: OrderUpdate) -> OrderUpdate:
        """Post the order as placed: ``TRANSIT``, created now, not yet at the exchange."""
        return self.emit(order, create_time=self.stamp(), exchange_time=NOT_AT_EXCHANGE)

    def accept(self, order: OrderUpdate, **changes: Any) -> OrderUpdate:
        """The exchange has the order: ``PENDING``, with its ``exchangeTime``."""
        return self.emit(
            order, order_status=OrderStatus.PENDING, exchange_time=self.stamp(), **changes
        )

    def fill_partly(self, order: OrderUpdate, parts: int, gap: tuple[int, int]) -> OrderUpdate:
        """Up to ``parts`` partial fills, always leaving at least one lot open."""
        for filled in self._fill_points(order, parts):
            self.wait(*gap)
            order = self.emit(order, filled_qty=filled)
        return order

    def fill(self, order: OrderUpdate, parts: int, gap: tuple[int, int]) -> OrderUpdate:
        """Partial fills (up to ``parts``), then ``TRADED``."""
        order = self.fill_partly(order, parts, gap)
        self.wait(*gap)
        return self.emit(order, order_status=OrderStatus.TRADED, filled_qty=order.quantity)

    def _fill_points(self, order: OrderUpdate, parts: int) -> list[int]:
        """Cumulative ``filled_qty`` values, in whole lots, strictly between now and done."""
        open_lots = (order.quantity - order.filled_qty) // self.lot
        cuts = self.rng.sample(range(1, open_lots), min(parts, max(0, open_lots - 1)))
        return [order.filled_qty + cut * self.lot for cut in sorted(cuts)]


# --------------------------------------------------------------------------------------------
# The simulator.


class Simulator:
    """Seeded order lifecycles for one trading date.

    Successive calls continue the same random sequence, so ``orders(5)`` then ``orders(5)``
    gives ten different orders, and the same calls with the same seed give the same ten.
    Order ids are unique across everything one simulator produces.
    """

    def __init__(
        self,
        seed: int,
        clients: Sequence[str] = DEFAULT_CLIENTS,
        start: date = DEFAULT_DATE,
    ) -> None:
        if isinstance(clients, str):
            clients = (clients,)
        if not clients or any(not client.strip() for client in clients):
            raise ValueError("clients must be a non-empty list of non-empty client ids")
        self._rng = random.Random(seed)
        self._clients = tuple(clients)
        while start.weekday() >= 5:
            start += timedelta(days=1)
        self.trading_date = start
        self._issued: set[str] = set()
        self._decks: dict[tuple[OrderKind, ...], list[OrderKind]] = {}
        self._algo_ids = tuple(str(self._rng.randint(10000, 99999)) for _ in range(3))
        self._builders: dict[OrderKind, Callable[[], list[OrderUpdate]]] = {
            OrderKind.MARKET: self._market,
            OrderKind.LIMIT: self._limit,
            OrderKind.LIMIT_EXPIRED: self._limit_expired,
            OrderKind.MODIFIED: self._modified,
            OrderKind.CANCELLED: self._cancelled,
            OrderKind.REJECTED: self._rejected,
            OrderKind.STOP_LOSS: self._stop_loss,
            OrderKind.STOP_LOSS_MARKET: self._stop_loss_market,
            OrderKind.IOC: self._ioc,
            OrderKind.COVER: self._cover,
            OrderKind.BRACKET: self._bracket,
            OrderKind.AFTER_MARKET: self._after_market,
            OrderKind.OPTION: self._option,
            OrderKind.FUTURE: self._future,
        }

    # ---------------------------------------------------------------- public

    def orders(self, n: int, kinds: Sequence[OrderKind] | None = None) -> list[SimulatedOrder]:
        """``n`` orders, their kinds dealt from shuffled decks of ``kinds`` (default: all).

        A fresh simulator's first ``len(kinds)`` orders cover every kind, and so does each
        following deck. The deck carries over between calls, so ``orders(5)`` twice deals the
        same kinds as ``orders(10)`` once.
        """
        pool = tuple(kinds) if kinds is not None else tuple(OrderKind)
        if not pool:
            raise ValueError("kinds must not be empty")
        deck = self._decks.setdefault(pool, [])
        chosen: list[OrderKind] = []
        while len(chosen) < n:
            if not deck:
                deck.extend(pool)
                self._rng.shuffle(deck)
            chosen.append(deck.pop())
        return [self.order(kind) for kind in chosen]

    def order(self, kind: OrderKind) -> SimulatedOrder:
        """One order playing out ``kind``."""
        return SimulatedOrder(kind=kind, updates=self._builders[kind]())

    # ---------------------------------------------------------------- instruments

    def _equity(self) -> Contract:
        return self._rng.choice(EQUITIES)

    def _option_contract(self) -> Contract:
        rng = self._rng
        underlying = rng.choice(INDEX_OPTIONS)
        spot = underlying.spot * (1 + rng.gauss(0, 0.004))
        atm = round(spot / underlying.strike_step) * underlying.strike_step
        strike = atm + rng.randint(-6, 6) * underlying.strike_step
        option_type = rng.choice((OptionType.CALL, OptionType.PUT))
        intrinsic = max(0.0, spot - strike if option_type is OptionType.CALL else strike - spot)
        distance = abs(strike - spot) / (spot * 0.02)
        premium = intrinsic + underlying.time_value * math.exp(-distance)
        expiry = underlying.expiry(self.trading_date)
        steps = int(strike // underlying.strike_step) % 5000
        security_id = str(underlying.id_base + steps * 2 + (option_type is OptionType.PUT))
        suffix = "CE" if option_type is OptionType.CALL else "PE"
        return Contract(
            trading_symbol=f"{underlying.name}-{_symbol_month(expiry)}-{int(strike)}-{suffix}",
            security_id=security_id,
            segment=ExchangeSegment.NSE_FNO,
            tick=0.05,
            lot=underlying.lot,
            reference_price=_on_tick(premium, 0.05),
            expiry=expiry,
            option_type=option_type,
            strike=strike,
            freeze_quantity=underlying.freeze_quantity,
        )

    def _future_contract(self) -> Contract:
        spec = self._rng.choice(FUTURES)
        expiry = spec.expiry(self.trading_date)
        return Contract(
            trading_symbol=f"{spec.name}-{_symbol_month(expiry)}-FUT",
            security_id=spec.security_id,
            segment=spec.segment,
            tick=spec.tick,
            lot=spec.lot,
            reference_price=spec.price,
            expiry=expiry,
        )

    def _any_contract(self) -> Contract:
        """Mostly equities, sometimes an index option or a future."""
        roll = self._rng.random()
        if roll < 0.7:
            return self._equity()
        if roll < 0.9:
            return self._option_contract()
        return self._future_contract()

    # ---------------------------------------------------------------- order building blocks

    def _new_order_id(self) -> str:
        """12 or 13 digits like the broker's: a prefix, the date as YYMMDD, a sequence."""
        day = self.trading_date.strftime("%y%m%d")
        while True:
            candidate = f"{self._rng.randint(1, 99)}{day}{self._rng.randint(0, 99999):05d}"
            if candidate not in self._issued:
                self._issued.add(candidate)
                return candidate

    def _session(self, contract: Contract) -> tuple[datetime, datetime]:
        session = SESSIONS[contract.segment]
        return (
            datetime.combine(self.trading_date, session.open),
            datetime.combine(self.trading_date, session.close),
        )

    def _placement_time(self, contract: Contract) -> datetime:
        """A moment in the session that leaves time for a lifecycle before the close."""
        opens, closes = self._session(contract)
        latest = closes - timedelta(minutes=45)
        span = int((latest - opens).total_seconds())
        return opens + timedelta(seconds=self._rng.randint(5, span))

    def _price_near(self, contract: Contract, ticks: int = 20) -> float:
        drift = self._rng.randint(-ticks, ticks) * contract.tick
        return _on_tick(contract.reference_price + drift, contract.tick)

    def _quantity(self, contract: Contract, min_lots: int = 1) -> int:
        if contract.segment in (ExchangeSegment.NSE_EQ, ExchangeSegment.BSE_EQ):
            most = 250
        elif contract.option_type is not None:
            most = 10
        else:
            most = 5
        return self._rng.randint(min_lots, max(min_lots, most)) * contract.lot

    def _equity_product(self) -> ProductType:
        return self._rng.choices(
            (ProductType.CNC, ProductType.INTRADAY, ProductType.MTF), weights=(5, 8, 1)
        )[0]

    def _derivative_product(self) -> ProductType:
        return self._rng.choice((ProductType.INTRADAY, ProductType.MARGIN))

    def _product_for(self, contract: Contract) -> ProductType:
        return self._derivative_product() if contract.is_derivative else self._equity_product()

    def _correlation_id(self, client: str, created: datetime) -> str | None:
        roll = self._rng.random()
        if roll < 0.3:
            # The broker's own choice when the trader gives none: client id and epoch millis.
            millis = int(created.replace(tzinfo=IST).timestamp()) * 1000
            return f"{client}-{millis + self._rng.randint(0, 999)}"
        if roll < 0.5:
            return f"strat-{self._rng.getrandbits(40):010x}"
        return None

    def _new_limit(self, contract: Contract) -> tuple[OrderUpdate, _Timeline]:
        """A limit order of two lots or more (room for partial fills and modifications)."""
        product = self._product_for(contract)  # first: the same seed must draw in the same order
        quantity = self._quantity(contract, min_lots=2)
        return self._new(contract, OrderType.LIMIT, product, quantity=quantity)

    def _new(
        self,
        contract: Contract,
        order_type: OrderType,
        product: ProductType,
        *,
        quantity: int | None = None,
        created: datetime | None = None,
        **fields: Any,
    ) -> tuple[OrderUpdate, _Timeline]:
        """The order as placed (not yet emitted) and its timeline."""
        rng = self._rng
        created = created or self._placement_time(contract)
        _, closes = self._session(contract)
        client = rng.choice(self._clients)
        if quantity is None:
            quantity = self._quantity(contract)
        market = order_type in (OrderType.MARKET, OrderType.STOP_LOSS_MARKET)
        price = 0.0 if market else self._price_near(contract)
        stamp = created.strftime(TIME_FORMAT)
        order = OrderUpdate(
            dhan_client_id=client,
            order_id=self._new_order_id(),
            correlation_id=self._correlation_id(client, created),
            order_status=OrderStatus.TRANSIT,
            transaction_type=rng.choice((TransactionType.BUY, TransactionType.SELL)),
            exchange_segment=contract.segment,
            product_type=product,
            order_type=order_type,
            validity=Validity.DAY,
            trading_symbol=contract.trading_symbol,
            security_id=contract.security_id,
            quantity=quantity,
            price=price,
            create_time=stamp,
            update_time=stamp,
            exchange_time=NOT_AT_EXCHANGE,
            drv_expiry_date=contract.expiry.isoformat() if contract.expiry else None,
            drv_option_type=contract.option_type,
            drv_strike_price=contract.strike,
            algo_id=rng.choice(self._algo_ids) if rng.random() < 0.15 else None,
        ).replace(**fields)
        return order, _Timeline(rng, created, closes, contract.lot)

    # ---------------------------------------------------------------- lifecycles

    def _market(self) -> list[OrderUpdate]:
        contract = self._any_contract()
        order, timeline = self._new(contract, OrderType.MARKET, self._product_for(contract))
        order = timeline.place(order)
        timeline.wait(0, 1)
        if self._rng.random() < 0.2:
            # Accepted and filled in one go: the broker posts the fill straight after TRANSIT.
            timeline.emit(
                order,
                order_status=OrderStatus.TRADED,
                filled_qty=order.quantity,
                exchange_time=timeline.stamp(),
            )
            return timeline.updates
        order = timeline.accept(order)
        timeline.fill(order, parts=self._rng.choice((0, 0, 1, 2)), gap=(0, 1))
        return timeline.updates

    def _limit(self) -> list[OrderUpdate]:
        contract = self._any_contract()
        order, timeline = self._new_limit(contract)
        if not contract.is_derivative and order.quantity >= 50 and self._rng.random() < 0.3:
            # Show only part of a large order to the market (at least 30%, the broker's rule).
            order = order.replace(disclosed_quantity=math.ceil(order.quantity * 0.3))
        order = timeline.accept(timeline.place(order))
        timeline.fill(order, parts=self._rng.randint(1, 4), gap=(1, 900))
        return timeline.updates

    def _limit_expired(self) -> list[OrderUpdate]:
        contract = self._any_contract()
        product = ProductType.MARGIN if contract.is_derivative else ProductType.CNC
        order, timeline = self._new(contract, OrderType.LIMIT, product)
        order = timeline.accept(timeline.place(order))
        order = timeline.fill_partly(order, self._rng.randint(0, 2), gap=(60, 3600))
        timeline.at_close()
        timeline.emit(order, order_status=OrderStatus.EXPIRED)
        return timeline.updates

    def _modified(self) -> list[OrderUpdate]:
        rng = self._rng
        contract = self._any_contract()
        order, timeline = self._new_limit(contract)
        order = timeline.accept(timeline.place(order))
        for _ in range(rng.randint(1, 3)):
            timeline.wait(30, 1200)
            order = timeline.emit(order, **self._modification(order, contract))
            if rng.random() < 0.3:
                order = timeline.fill_partly(order, 1, gap=(1, 300))
        if rng.random() < 0.25:
            # Give up on the limit: modify to a market order, which fills at once.
            timeline.wait(10, 600)
            order = timeline.emit(order, order_type=OrderType.MARKET, price=0.0)
            timeline.fill(order, parts=0, gap=(0, 1))
        else:
            timeline.fill(order, parts=rng.randint(0, 2), gap=(1, 900))
        return timeline.updates

    def _modification(self, order: OrderUpdate, contract: Contract) -> dict[str, Any]:
        """A change of price, or of quantity (never below what is filled plus a lot)."""
        rng = self._rng
        if rng.random() < 0.3:
            lots = order.quantity // contract.lot
            floor = order.filled_qty // contract.lot + 1
            choices = [n for n in range(max(1, floor), lots + 6) if n != lots]
            return {"quantity": rng.choice(choices) * contract.lot}
        step = rng.choice((-1, 1)) * rng.randint(1, 20) * contract.tick
        price = _on_tick(order.price + step, contract.tick)
        if price == order.price:
            price = _on_tick(order.price + contract.tick, contract.tick)
        return {"price": price}

    def _cancelled(self) -> list[OrderUpdate]:
        contract = self._any_contract()
        order, timeline = self._new(contract, OrderType.LIMIT, self._product_for(contract))
        order = timeline.accept(timeline.place(order))
        order = timeline.fill_partly(order, self._rng.randint(0, 2), gap=(5, 900))
        timeline.wait(30, 3600)
        return timeline.cancel(order)

    def _rejected(self) -> list[OrderUpdate]:
        """Refused by the broker's risk checks (never reaches the exchange) or by the exchange."""
        rng = self._rng
        flavour = rng.choice(("margin", "circuit", "freeze", "exchange"))
        if flavour == "freeze":
            contract = self._option_contract()
            lots = contract.freeze_quantity // contract.lot + rng.randint(1, 5)
            order, timeline = self._new(
                contract, OrderType.LIMIT, self._derivative_product(), quantity=lots * contract.lot
            )
            rejection = _Rejection(
                "811",
                f"RMS:{order.order_id}:Order Quantity {order.quantity} exceeds Freeze Limit of "
                f"{contract.freeze_quantity} for {contract.trading_symbol}",
                at_exchange=False,
            )
        elif flavour == "circuit":
            contract = self._equity()
            order, timeline = self._new(contract, OrderType.LIMIT, self._equity_product())
            order, rejection = self._outside_circuit(order, contract)
        elif flavour == "exchange":
            contract = self._any_contract()
            order, timeline = self._new(contract, OrderType.LIMIT, self._product_for(contract))
            rejection = _Rejection("0", rng.choice(_EXCHANGE_REFUSALS), at_exchange=True)
        else:
            contract = self._any_contract()
            order, timeline = self._new(contract, OrderType.MARKET, self._product_for(contract))
            rejection = self._short_of_margin(order, contract)
        order = timeline.place(order)
        timeline.wait(0, 1)
        timeline.emit(
            order,
            order_status=OrderStatus.REJECTED,
            oms_error_code=rejection.code,
            oms_error_description=rejection.description,
            exchange_time=timeline.stamp() if rejection.at_exchange else NOT_AT_EXCHANGE,
        )
        return timeline.updates

    def _outside_circuit(
        self, order: OrderUpdate, contract: Contract
    ) -> tuple[OrderUpdate, _Rejection]:
        """A limit price beyond the day's price band, and the broker's words for it."""
        rng = self._rng
        band = rng.choice((0.05, 0.1, 0.2))
        low = _on_tick(contract.reference_price * (1 - band), contract.tick)
        high = _on_tick(contract.reference_price * (1 + band), contract.tick)
        beyond = rng.randint(1, 40) * contract.tick
        if order.transaction_type is TransactionType.BUY:
            price = _on_tick(high + beyond, contract.tick)
        else:
            price = _on_tick(low - beyond, contract.tick)
        description = (
            f"RMS:{order.order_id}:Order Price needs to be Circuit Limits of "
            f"{low:.2f} to {high:.2f}"
        )
        return order.replace(price=price), _Rejection("809", description, at_exchange=False)

    def _short_of_margin(self, order: OrderUpdate, contract: Contract) -> _Rejection:
        rng = self._rng
        value = contract.reference_price * order.quantity
        share = 1.0 if order.product_type is ProductType.CNC else rng.uniform(0.15, 0.25)
        required = value * share
        available = required * rng.uniform(0.05, 0.9)
        return _Rejection(
            "805",
            f"RMS:{order.order_id}:Margin Exceeds, Required Margin: {required:.2f}, "
            f"Available Margin: {available:.2f}",
            at_exchange=False,
        )

    def _stop_loss(self) -> list[OrderUpdate]:
        return self._stop(OrderType.STOP_LOSS)

    def _stop_loss_market(self) -> list[OrderUpdate]:
        return self._stop(OrderType.STOP_LOSS_MARKET)

    def _stop(self, order_type: OrderType) -> list[OrderUpdate]:
        """A stop order waits for its trigger, then fills, or stays untriggered all day."""
        rng = self._rng
        contract = self._any_contract()
        order, timeline = self._new(contract, order_type, self._product_for(contract))
        buy = order.transaction_type is TransactionType.BUY
        direction = 1 if buy else -1
        tick = contract.tick
        trigger = _on_tick(contract.reference_price + direction * rng.randint(2, 40) * tick, tick)
        price = 0.0
        if order_type is OrderType.STOP_LOSS:
            price = _on_tick(trigger + direction * rng.randint(1, 10) * tick, tick)
        order = order.replace(trigger_price=trigger, price=price)
        order = timeline.accept(timeline.place(order))
        roll = rng.random()
        if roll < 0.65:
            timeline.wait(60, 7200)
            parts = rng.randint(0, 2) if order_type is OrderType.STOP_LOSS else 0
            timeline.fill(order, parts=parts, gap=(0, 30))
        elif roll < 0.85:
            timeline.at_close()
            timeline.emit(order, order_status=OrderStatus.EXPIRED)
        else:
            timeline.wait(300, 7200)
            timeline.cancel(order)
        return timeline.updates

    def _ioc(self) -> list[OrderUpdate]:
        """Immediate or cancel: fills what it can at once, the rest is cancelled."""
        rng = self._rng
        contract = self._any_contract()
        order_type = OrderType.LIMIT if rng.random() < 0.8 else OrderType.MARKET
        order, timeline = self._new(
            contract, order_type, self._product_for(contract), validity=Validity.IOC
        )
        order = timeline.place(order)
        timeline.wait(0, 1)
        order = timeline.accept(order)
        roll = rng.random()
        if roll < 0.5:
            timeline.fill(order, parts=0, gap=(0, 1))
            return timeline.updates
        if roll < 0.75:
            order = timeline.fill_partly(order, 1, gap=(0, 0))
        timeline.wait(0, 1)
        return timeline.cancel(order)

    def _cover(self) -> list[OrderUpdate]:
        """CO: an entry with a compulsory stop-loss; the stop-loss leg lives on after it."""
        rng = self._rng
        contract = self._equity()
        order_type = rng.choice((OrderType.MARKET, OrderType.LIMIT))
        entry, timeline = self._new(
            contract, order_type, ProductType.CO, leg_name=LegName.ENTRY_LEG
        )
        buy = entry.transaction_type is TransactionType.BUY
        tick = contract.tick
        trigger = _on_tick(
            contract.reference_price - (1 if buy else -1) * rng.randint(10, 80) * tick, tick
        )
        entry = timeline.place(entry.replace(trigger_price=trigger))
        timeline.wait(0, 2)
        entry = timeline.accept(entry)
        entry = timeline.fill(entry, parts=0, gap=(0, 60))
        stop = entry.replace(
            order_status=OrderStatus.PENDING,
            leg_name=LegName.STOP_LOSS_LEG,
            transaction_type=_opposite(entry.transaction_type),
            order_type=OrderType.STOP_LOSS_MARKET,
            price=0.0,
            filled_qty=0,
            create_time=timeline.stamp(),
            exchange_time=timeline.stamp(),
        )
        stop = timeline.emit(stop)
        if rng.random() < 0.4:
            # Trailing the stop towards the price.
            timeline.wait(60, 3600)
            moved = trigger + (1 if buy else -1) * rng.randint(1, 10) * tick
            stop = timeline.emit(stop, trigger_price=_on_tick(moved, tick))
        timeline.wait(60, 14400)
        timeline.emit(stop, order_status=OrderStatus.TRADED, filled_qty=stop.quantity)
        return timeline.updates

    def _bracket(self) -> list[OrderUpdate]:
        """BO: entry, then a target and a stop-loss leg; one trades, the other is cancelled."""
        rng = self._rng
        contract = self._equity()
        tick = contract.tick
        profit = rng.randint(10, 100) * tick
        loss = rng.randint(10, 60) * tick
        entry, timeline = self._new(
            contract,
            OrderType.LIMIT,
            ProductType.BO,
            leg_name=LegName.ENTRY_LEG,
            bo_profit_value=round(profit, 4),
            bo_stop_loss_value=round(loss, 4),
        )
        entry = timeline.accept(timeline.place(entry))
        if rng.random() < 0.15:
            timeline.wait(60, 3600)
            return timeline.cancel(entry)
        entry = timeline.fill(entry, parts=0, gap=(1, 1800))
        sign = 1 if entry.transaction_type is TransactionType.BUY else -1
        exit_leg = entry.replace(
            order_status=OrderStatus.PENDING,
            transaction_type=_opposite(entry.transaction_type),
            filled_qty=0,
            create_time=timeline.stamp(),
            exchange_time=timeline.stamp(),
        )
        target = timeline.emit(
            exit_leg,
            leg_name=LegName.TARGET_LEG,
            price=_on_tick(entry.price + sign * profit, tick),
        )
        stop = timeline.emit(
            exit_leg,
            leg_name=LegName.STOP_LOSS_LEG,
            order_type=OrderType.STOP_LOSS_MARKET,
            price=0.0,
            trigger_price=_on_tick(entry.price - sign * loss, tick),
        )
        if rng.random() < 0.3:
            timeline.wait(60, 3600)
            trailed = stop.trigger_price + sign * rng.randint(1, 10) * tick
            stop = timeline.emit(stop, trigger_price=_on_tick(trailed, tick))
        timeline.wait(60, 14400)
        winner, loser = (target, stop) if rng.random() < 0.5 else (stop, target)
        timeline.emit(winner, order_status=OrderStatus.TRADED, filled_qty=winner.quantity)
        return timeline.cancel(loser)

    def _after_market(self) -> list[OrderUpdate]:
        """AMO: placed before the open, held in TRANSIT, sent to the exchange at the open."""
        rng = self._rng
        contract = self._equity()
        opens, _ = self._session(contract)
        created = datetime.combine(self.trading_date, time(6, 0)) + timedelta(
            seconds=rng.randint(0, 2 * 3600 + 45 * 60)
        )
        order_type = OrderType.LIMIT if rng.random() < 0.8 else OrderType.MARKET
        order, timeline = self._new(
            contract,
            order_type,
            self._equity_product(),
            created=created,
            after_market_order=True,
        )
        order = timeline.place(order)
        if order_type is OrderType.LIMIT and rng.random() < 0.3:
            timeline.wait(60, 600)
            order = timeline.emit(order, **self._modification(order, contract))
        timeline.clock = max(timeline.clock, opens)
        timeline.wait(0, 2)
        order = timeline.accept(order)
        if order_type is OrderType.MARKET:
            timeline.fill(order, parts=0, gap=(0, 1))
            return timeline.updates
        return self._limit_outcome(timeline, order, accepted=True)

    def _option(self) -> list[OrderUpdate]:
        contract = self._option_contract()
        order, timeline = self._new(contract, OrderType.LIMIT, self._derivative_product())
        return self._limit_outcome(timeline, timeline.place(order))

    def _future(self) -> list[OrderUpdate]:
        contract = self._future_contract()
        order_type = OrderType.LIMIT if self._rng.random() < 0.7 else OrderType.MARKET
        order, timeline = self._new(contract, order_type, self._derivative_product())
        order = timeline.place(order)
        if order_type is OrderType.MARKET:
            timeline.wait(0, 1)
            timeline.fill(timeline.accept(order), parts=1, gap=(0, 1))
            return timeline.updates
        return self._limit_outcome(timeline, order)

    def _limit_outcome(
        self, timeline: _Timeline, order: OrderUpdate, *, accepted: bool = False
    ) -> list[OrderUpdate]:
        """A resting limit order's fate: filled (in parts), cancelled, or expired."""
        rng = self._rng
        if not accepted:
            timeline.wait(0, 1)
            order = timeline.accept(order)
        roll = rng.random()
        if roll < 0.6:
            timeline.fill(order, parts=rng.randint(0, 3), gap=(1, 900))
        elif roll < 0.8:
            order = timeline.fill_partly(order, rng.randint(0, 1), gap=(5, 900))
            timeline.wait(30, 3600)
            timeline.cancel(order)
        else:
            order = timeline.fill_partly(order, rng.randint(0, 1), gap=(60, 3600))
            timeline.at_close()
            timeline.emit(order, order_status=OrderStatus.EXPIRED)
        return timeline.updates


def _opposite(side: TransactionType) -> TransactionType:
    return TransactionType.SELL if side is TransactionType.BUY else TransactionType.BUY


# --------------------------------------------------------------------------------------------
# Streams.


def interleave(orders: Sequence[SimulatedOrder], rng: random.Random) -> list[OrderUpdate]:
    """All updates of ``orders`` as one stream in time order, each order's own order kept.

    Updates stamped with the same second are mixed at random (through ``rng``), as they
    would be by a busy broker.
    """
    heap: list[tuple[str, float, int, int]] = [
        (order.updates[0].update_time, rng.random(), index, 0)
        for index, order in enumerate(orders)
        if order.updates
    ]
    heapq.heapify(heap)
    stream: list[OrderUpdate] = []
    while heap:
        _, _, index, position = heapq.heappop(heap)
        updates = orders[index].updates
        stream.append(updates[position])
        if position + 1 < len(updates):
            following = updates[position + 1]
            heapq.heappush(heap, (following.update_time, rng.random(), index, position + 1))
    return stream


_NULL_LEG: Final = b'"legName":null'
_LEG_HOLE: Final = b'"legName": '


@dataclass(order=True, slots=True)
class _Placed:
    position: float
    sequence: int
    body: bytes = field(compare=False)


def with_quirks(
    stream: Sequence[OrderUpdate],
    rng: random.Random,
    *,
    duplicates: float = 0.0,
    reorder: float = 0.0,
    drop_leg_name: float = 0.0,
) -> list[bytes]:
    """The bodies of ``stream`` as an imperfect sender delivers them, to test receivers.

    * ``duplicates``: the chance that a body is delivered again, right after or a few bodies
      later (an at-least-once retry);
    * ``reorder``: the chance that a body is overtaken by up to three later ones;
    * ``drop_leg_name``: the chance that a null ``legName`` is written as the documentation's
      own invalid example writes it, ``"legName": ,`` (bodies whose ``legName`` has a value
      keep it).
    """
    placed: list[_Placed] = []
    for index, update in enumerate(stream):
        body = dumps(update)
        if rng.random() < drop_leg_name:
            body = body.replace(_NULL_LEG, _LEG_HOLE, 1)
        position = float(index)
        if rng.random() < reorder:
            position += rng.uniform(1.0, 3.5)
        placed.append(_Placed(position, len(placed), body))
        if rng.random() < duplicates:
            placed.append(_Placed(position + rng.uniform(0.0, 3.0), len(placed), body))
    placed.sort()
    return [item.body for item in placed]
