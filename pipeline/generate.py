"""Synthetic landing zone: genuine customers, look-alikes and fraud that only order reveals.

Every array is built with numpy for all customers at once (one call per scenario), then
assembled into the three logs of CONTRACT.md section 1. Fraud is hidden on purpose: its
amounts, channels, hours and countries come from the same samplers as genuine traffic, so
no single raw column separates it; the give-away is the sequence (failed logins from
abroad, a new device, a profile change, then a transfer to a new payee). The scenario of
every transaction goes to ``_truth/``, outside the three log folders.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from pipeline.errors import UsageError

DAY = 86_400
COUNTRIES = ("BE", "NL", "FR", "DE", "ES", "IT", "IE", "AT", "PT", "LU", "GB", "US", "CH", "PL", "SE")
CURRENCIES = ("EUR",) * 10 + ("GBP", "USD", "CHF", "PLN", "SEK")
HOME_WEIGHTS = np.array([3, 4, 5, 5, 4, 4, 1, 2, 2], float)  # customers live in the first nine
POS_CATEGORIES = ("5411", "5812", "5541", "5311", "5912", "5999", "4111", "5651", "5732", "7011")
ECOM_CATEGORIES = ("5942", "5732", "4899", "5818", "4722", "5964", "5691")
CATEGORIES = tuple(dict.fromkeys(POS_CATEGORIES + ECOM_CATEGORIES + ("6011", "4829")))
CHANNELS = ("pos", "ecom", "transfer", "atm")
POS, ECOM, TRANSFER, ATM = range(4)
LOGIN_TYPES = ("login_success", "login_failure", "password_reset", "mfa_change", "profile_change")
SUCCESS, FAILURE, RESET, MFA, PROFILE = range(5)
USER_AGENTS = (
    "BankApp/7.2 iOS",
    "BankApp/7.1 Android",
    "Mozilla/5.0 Chrome Windows",
    "Mozilla/5.0 Safari macOS",
)
GENUINE_SCENARIOS = ("genuine", "travel", "new_phone", "big_purchase", "new_payee")
FRAUD_SCENARIOS = ("account_takeover", "card_testing", "sim_swap", "stolen_card")
SCENARIOS = GENUINE_SCENARIOS + FRAUD_SCENARIOS
HOUR_WEIGHTS = np.array(
    [1, 0.6, 0.4, 0.3, 0.3, 0.5, 1.2, 2.5, 4, 5, 5.5, 6, 6.5, 6, 5.5, 5.5, 6, 6.5, 7, 6.5, 5.5, 4, 3, 2]
)
POS_PER_COUNTRY, ATM_PER_COUNTRY, N_ECOM = 300, 100, 3000
# merchant numbers: shops from 0, web shops, ATMs and payees from their offsets (id prefixes M, M, A, P)
ECOM_OFFSET, ATM_OFFSET, PAYEE_OFFSET = 100_000, 200_000, 1_000_000


@dataclass(frozen=True)
class GenerateConfig:
    """Rates per customer-day unless said otherwise; tuned so that no raw column separates fraud."""

    tx_per_day: float = 1.6
    logins_per_day: float = 0.6
    channel_mix: tuple[float, float, float, float] = (0.44, 0.28, 0.17, 0.11)
    p_login_before_online: float = 0.85
    p_typo: float = 0.06
    p_preferred: float = 0.75
    p_micro: float = 0.10
    p_one_off_payee: float = 0.2
    trip_rate: float = 0.006
    new_phone_rate: float = 0.003
    big_purchase_rate: float = 0.002
    new_payee_rate: float = 0.008
    maintenance_rate: float = 0.005
    fraud_rate: float = 0.007
    fraud_mix: tuple[float, float, float, float] = (0.2, 0.25, 0.1, 0.45)  # same order as FRAUD_SCENARIOS
    genuine_label_share: float = 0.003
    label_delay_days: tuple[int, int] = (1, 21)


@dataclass
class GenerateSummary:
    """What ``generate_landing`` wrote."""

    out: Path
    n_transactions: int
    n_logins: int
    n_labels: int
    n_frauds: int
    days: int
    truth_path: Path
    wall_s: float


@dataclass
class World:
    """Customers and merchants: the fixed context every scenario draws from."""

    home: np.ndarray  # (N,) country index
    spend: np.ndarray  # (N,) typical card payment in EUR
    n_dev: np.ndarray  # (N,) known devices, 1-3
    dev_base: np.ndarray  # (N,) first known device id
    home_ip: np.ndarray  # (N,) IPv4 as int
    pref_pos: np.ndarray  # (N, 6) merchant ids in the home country
    pref_ecom: np.ndarray  # (N, 4)
    pref_atm: np.ndarray  # (N, 2)
    payee_country: np.ndarray  # (N, 3) known payees are c*3+k
    n_payees: np.ndarray  # (N,)
    channel_cum: np.ndarray  # (N, 4) cumulative channel mix
    lam_tx: np.ndarray  # (N,)
    trip: np.ndarray  # (N, 3) start day, end day (exclusive), destination
    ecom_country: np.ndarray  # (N_ECOM,)
    ecom_cat: np.ndarray  # (N_ECOM,)
    pos_cat: np.ndarray  # (countries * POS_PER_COUNTRY,)
    next_device: int
    next_payee: int

    @property
    def n(self) -> int:
        return len(self.home)

    def fresh_devices(self, k: int) -> np.ndarray:
        """Device ids never used before: a fraudster's phone or a customer's new one."""
        ids = np.arange(self.next_device, self.next_device + k)
        self.next_device += k
        return ids

    def fresh_payees(self, k: int) -> np.ndarray:
        ids = np.arange(self.next_payee, self.next_payee + k)
        self.next_payee += k
        return ids


def build_world(n: int, days: int, cfg: GenerateConfig, rng: np.random.Generator) -> World:
    """Draw customers (home, spend level, devices, habits) and the merchant tables."""
    home = rng.choice(len(HOME_WEIGHTS), n, p=HOME_WEIGHTS / HOME_WEIGHTS.sum())
    n_dev = rng.integers(1, 4, n)
    trip_start = np.where(rng.random(n) < min(1.0, cfg.trip_rate * days), rng.integers(0, days, n), days)
    dest = (home + rng.integers(1, len(COUNTRIES), n)) % len(COUNTRIES)
    mix = rng.dirichlet(np.array(cfg.channel_mix) * 30, n)
    return World(
        home=home,
        spend=np.exp(rng.normal(3.0, 0.5, n)),
        n_dev=n_dev,
        dev_base=np.concatenate([[0], np.cumsum(n_dev)[:-1]]),
        home_ip=random_ips(home, rng),
        pref_pos=home[:, None] * POS_PER_COUNTRY + (popular(rng, (n, 6)) * POS_PER_COUNTRY).astype(int),
        pref_ecom=ECOM_OFFSET + (popular(rng, (n, 4)) * N_ECOM).astype(int),
        pref_atm=ATM_OFFSET
        + home[:, None] * ATM_PER_COUNTRY
        + (popular(rng, (n, 2)) * ATM_PER_COUNTRY).astype(int),
        payee_country=np.where(
            rng.random((n, 3)) < 0.9, home[:, None], rng.integers(0, len(COUNTRIES), (n, 3))
        ),
        n_payees=rng.integers(1, 4, n),
        channel_cum=np.cumsum(mix, axis=1),
        lam_tx=rng.gamma(3.0, cfg.tx_per_day / 3.0, n),
        trip=np.stack([trip_start, trip_start + rng.integers(2, 8, n), dest], axis=1),
        ecom_country=rng.choice(len(COUNTRIES), N_ECOM, p=_ecom_country_weights()),
        ecom_cat=rng.integers(0, len(ECOM_CATEGORIES), N_ECOM),
        pos_cat=rng.integers(0, len(POS_CATEGORIES), len(COUNTRIES) * POS_PER_COUNTRY),
        next_device=int(n_dev.sum()),
        next_payee=PAYEE_OFFSET + 3 * n,
    )


def _ecom_country_weights() -> np.ndarray:
    w = np.ones(len(COUNTRIES))
    w[:9] = HOME_WEIGHTS
    w[COUNTRIES.index("GB")], w[COUNTRIES.index("US")], w[COUNTRIES.index("IE")] = 3, 3, 3
    return w / w.sum()


# ---------------------------------------------------------------- small samplers


def random_ips(country: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """IPv4 addresses as ints whose first octet encodes the country, as geolocation would.

    Every octet is in 100-255 so the dotted text has a fixed width and can be written fast.
    """
    k = len(country)
    first = 100 + 9 * country + rng.integers(0, 4, k)
    return (
        first * 2**24
        + rng.integers(100, 256, k) * 2**16
        + rng.integers(100, 256, k) * 2**8
        + rng.integers(100, 256, k)
    )


def seconds_of_day(rng: np.random.Generator, k: int) -> np.ndarray:
    """Times of day from one diurnal profile shared by genuine and fraud events."""
    hour = rng.choice(24, k, p=HOUR_WEIGHTS / HOUR_WEIGHTS.sum())
    return hour * 3600 + rng.integers(0, 3600, k)


def customer_days(rng: np.random.Generator, rate: np.ndarray | float, n: int, days: int) -> tuple:
    """Poisson counts per customer-day, expanded to (customer, day) rows."""
    lam = np.broadcast_to(np.asarray(rate, float).reshape(-1, 1), (n, days))
    counts = rng.poisson(lam).ravel()
    cust = np.repeat(np.repeat(np.arange(n), days), counts)
    day = np.repeat(np.tile(np.arange(days), n), counts)
    return cust, day


def pick(
    rng: np.random.Generator, table: np.ndarray, rows: np.ndarray, width: np.ndarray | None = None
) -> np.ndarray:
    """One random entry of ``table[rows]``, among the first ``width`` columns when given."""
    hi = table.shape[1] if width is None else width
    return table[rows, (rng.random(len(rows)) * hi).astype(int)]


def known_device(w: World, cust: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return w.dev_base[cust] + (rng.random(len(cust)) * w.n_dev[cust]).astype(int)


def known_payee(w: World, cust: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One of the customer's usual payees (rent, family, savings)."""
    return PAYEE_OFFSET + cust * 3 + (rng.random(len(cust)) * w.n_payees[cust]).astype(int)


def known_payee_country(w: World, cust: np.ndarray, merchant: np.ndarray) -> np.ndarray:
    """Country of a usual payee; meaningless (and unused) for other merchants."""
    return w.payee_country[cust, np.clip(merchant - PAYEE_OFFSET - cust * 3, 0, 2)]


def session_ip(w: World, cust: np.ndarray, country: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Home broadband at home most of the time, otherwise a mobile IP where the customer is."""
    at_home = (country == w.home[cust]) & (rng.random(len(cust)) < 0.6)
    return np.where(at_home, w.home_ip[cust], random_ips(country, rng))


def amounts(w: World, cust: np.ndarray, channel: np.ndarray, rng: np.random.Generator, shift: float = 0.0):
    """Lognormal amounts around the customer's spend level; shared by genuine and fraud."""
    scale = np.array([1.0, 1.6, 5.0, 3.0])[channel]
    amount = w.spend[cust] * scale * np.exp(rng.normal(shift, 0.8, len(cust)))
    amount = np.where(channel == ATM, np.maximum(20, np.round(amount / 20) * 20), amount)
    return np.round(amount, 2)


def rank_in_group(idx: np.ndarray) -> np.ndarray:
    """0, 1, 2... within each run of equal values of a sorted group index."""
    starts = np.r_[0, np.flatnonzero(idx[1:] != idx[:-1]) + 1]
    return np.arange(len(idx)) - np.repeat(starts, np.diff(np.r_[starts, len(idx)]))


def micro_amounts(rng: np.random.Generator, k: int) -> np.ndarray:
    return np.round(rng.uniform(0.5, 4.0, k), 2)


def popular(rng: np.random.Generator, size: int | tuple[int, ...]) -> np.ndarray:
    """Uniforms skewed toward 0, so low merchant numbers are busy ones, for habits and strangers alike."""
    return rng.random(size) ** 2


def random_merchant(channel: np.ndarray, country: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A merchant the customer has no habit with: anywhere online, or a shop or ATM where they are."""
    u = popular(rng, len(channel))
    return np.select(
        [channel == POS, channel == ECOM, channel == ATM],
        [
            country * POS_PER_COUNTRY + (u * POS_PER_COUNTRY).astype(int),
            ECOM_OFFSET + (u * N_ECOM).astype(int),
            ATM_OFFSET + country * ATM_PER_COUNTRY + (u * ATM_PER_COUNTRY).astype(int),
        ],
        -1,
    )


def txs(cust, t, amount, channel, merchant, payee_country, device, ip, scenario: str) -> dict:
    """One block of transactions; category, country, card and currency are derived at assembly."""
    k = len(cust)
    col = lambda v: np.broadcast_to(np.asarray(v), (k,)).astype(np.int64)  # noqa: E731
    return {
        "cust": col(cust),
        "t": col(t),
        "amount": np.broadcast_to(amount, (k,)).astype(float),
        "channel": col(channel),
        "merchant": col(merchant),
        "payee_country": col(payee_country),
        "device": col(device),
        "ip": col(ip),
        "scenario": col(SCENARIOS.index(scenario)),
    }


def logins(cust, t, kind, device, ip, country) -> dict:
    k = len(cust)
    col = lambda v: np.broadcast_to(np.asarray(v), (k,)).astype(np.int64)  # noqa: E731
    return {
        "cust": col(cust),
        "t": col(t),
        "kind": col(kind),
        "device": col(device),
        "ip": col(ip),
        "country": col(country),
    }


def login_before(
    cust, t, device, ip, country, rng: np.random.Generator, p: float, p_typo: float
) -> list[dict]:
    """A login_success minutes before online payments, sometimes after a mistyped password."""
    has = rng.random(len(cust)) < p
    t_login = t[has] - rng.integers(30, 900, has.sum())
    typo = rng.random(has.sum()) < p_typo
    c, d, i, k = cust[has], device[has], ip[has], country[has]
    return [
        logins(c, t_login, SUCCESS, d, i, k),
        logins(c[typo], t_login[typo] - rng.integers(5, 60, typo.sum()), FAILURE, d[typo], i[typo], k[typo]),
    ]


# ---------------------------------------------------------------- genuine behaviour


def genuine_activity(w: World, days: int, cfg: GenerateConfig, rng: np.random.Generator):
    """Everyday payments (travel days included) with their logins, and balance checks."""
    cust, day = customer_days(rng, w.lam_tx, w.n, days)
    k = len(cust)
    t = day * DAY + seconds_of_day(rng, k)
    channel = (rng.random(k)[:, None] > w.channel_cum[cust]).sum(axis=1).clip(0, 3)
    away = (day >= w.trip[cust, 0]) & (day < w.trip[cust, 1])
    here = np.where(away, w.trip[cust, 2], w.home[cust])
    habit = (rng.random(k) < cfg.p_preferred) & ~(away & ((channel == POS) | (channel == ATM)))
    preferred = np.select(
        [channel == POS, channel == ECOM, channel == ATM],
        [pick(rng, w.pref_pos, cust), pick(rng, w.pref_ecom, cust), pick(rng, w.pref_atm, cust)],
        known_payee(w, cust, rng),
    )
    merchant = np.where(habit | (channel == TRANSFER), preferred, random_merchant(channel, here, rng))
    payee_country = known_payee_country(w, cust, merchant)
    one_off = (channel == TRANSFER) & (rng.random(k) < cfg.p_one_off_payee)  # paying a friend, a plumber
    merchant[one_off] = w.fresh_payees(int(one_off.sum()))
    payee_country[one_off] = np.where(
        rng.random(one_off.sum()) < 0.85, here[one_off], rng.integers(0, 15, one_off.sum())
    )
    micro = (rng.random(k) < cfg.p_micro) & ((channel == POS) | (channel == ECOM))
    amount = np.where(micro, micro_amounts(rng, k), amounts(w, cust, channel, rng))
    device, ip = known_device(w, cust, rng), session_ip(w, cust, here, rng)
    online = (channel == ECOM) | (channel == TRANSFER)
    parts_tx = [
        txs(cust[m], t[m], amount[m], channel[m], merchant[m], payee_country[m], device[m], ip[m], tag)
        for m, tag in ((~away, "genuine"), (away, "travel"))
    ]
    o = online
    parts_login = login_before(
        cust[o], t[o], device[o], ip[o], here[o], rng, cfg.p_login_before_online, cfg.p_typo
    )
    parts_login += balance_checks(w, days, cfg, rng)
    return parts_tx, parts_login


def balance_checks(w: World, days: int, cfg: GenerateConfig, rng: np.random.Generator) -> list[dict]:
    """Logins with no payment, and the odd password reset, MFA or profile change by the owner."""
    cust, day = customer_days(rng, cfg.logins_per_day, w.n, days)
    away = (day >= w.trip[cust, 0]) & (day < w.trip[cust, 1])
    here = np.where(away, w.trip[cust, 2], w.home[cust])
    t, device = day * DAY + seconds_of_day(rng, len(cust)), known_device(w, cust, rng)
    parts = login_before(cust, t + 600, device, session_ip(w, cust, here, rng), here, rng, 1.0, cfg.p_typo)
    mc, mday = customer_days(rng, cfg.maintenance_rate, w.n, days)
    mt, mdev, mip = mday * DAY + seconds_of_day(rng, len(mc)), known_device(w, mc, rng), w.home_ip[mc]
    kind = rng.choice([RESET, MFA, PROFILE], len(mc), p=[0.4, 0.2, 0.4])
    parts.append(logins(mc, mt, kind, mdev, mip, w.home[mc]))
    parts.append(logins(mc, mt + rng.integers(30, 300, len(mc)), SUCCESS, mdev, mip, w.home[mc]))
    return parts


def new_phone(w: World, days: int, cfg: GenerateConfig, rng: np.random.Generator):
    """Look-alike of account takeover: a new device, maybe a typo and a profile change, then usual payments."""
    cust, day = customer_days(rng, cfg.new_phone_rate, w.n, days)
    k = len(cust)
    t0, dev, ip, home = day * DAY + seconds_of_day(rng, k), w.fresh_devices(k), w.home_ip[cust], w.home[cust]
    typo, profile = rng.random(k) < 0.3, rng.random(k) < 0.5
    parts_login = [
        logins(cust, t0, SUCCESS, dev, ip, home),
        logins(cust[typo], t0[typo] - 40, FAILURE, dev[typo], ip[typo], home[typo]),
        logins(cust[profile], t0[profile] + 120, PROFILE, dev[profile], ip[profile], home[profile]),
    ]
    rep = rng.integers(1, 3, k)
    c, d, i = np.repeat(cust, rep), np.repeat(dev, rep), np.repeat(ip, rep)
    channel = np.where(rng.random(len(c)) < 0.5, ECOM, TRANSFER)
    merchant = np.where(channel == ECOM, pick(rng, w.pref_ecom, c), known_payee(w, c, rng))
    payee_country = known_payee_country(w, c, merchant)
    t = np.repeat(t0, rep) + rng.integers(300, 3600, len(c))
    return [
        txs(c, t, amounts(w, c, channel, rng), channel, merchant, payee_country, d, i, "new_phone")
    ], parts_login


def big_purchase(w: World, days: int, cfg: GenerateConfig, rng: np.random.Generator):
    """Look-alike of card testing's large payments: a rare large buy at a new merchant."""
    cust, day = customer_days(rng, cfg.big_purchase_rate, w.n, days)
    k = len(cust)
    t, home = day * DAY + seconds_of_day(rng, k), w.home[cust]
    channel = np.where(rng.random(k) < 0.5, POS, ECOM)
    device, ip = known_device(w, cust, rng), w.home_ip[cust]
    online = channel == ECOM
    parts_login = login_before(
        cust[online], t[online], device[online], ip[online], home[online], rng, 1.0, cfg.p_typo
    )
    amount = amounts(w, cust, channel, rng, shift=1.5)
    merchant = random_merchant(channel, home, rng)
    return [txs(cust, t, amount, channel, merchant, home, device, ip, "big_purchase")], parts_login


def new_payee(w: World, days: int, cfg: GenerateConfig, rng: np.random.Generator):
    """Look-alike of the transfer frauds: the owner pays someone new from a known device."""
    cust, day = customer_days(rng, cfg.new_payee_rate, w.n, days)
    k = len(cust)
    t, home = day * DAY + seconds_of_day(rng, k), w.home[cust]
    device, ip = known_device(w, cust, rng), w.home_ip[cust]
    parts_login = login_before(cust, t, device, ip, home, rng, 1.0, cfg.p_typo)
    payee_country = np.where(rng.random(k) < 0.85, home, rng.integers(0, len(COUNTRIES), k))
    amount = amounts(w, cust, np.full(k, TRANSFER), rng, shift=0.3)
    return [
        txs(cust, t, amount, TRANSFER, w.fresh_payees(k), payee_country, device, ip, "new_payee")
    ], parts_login


# ---------------------------------------------------------------- fraud scenarios


def account_takeover(w: World, cust: np.ndarray, t0: np.ndarray, rng: np.random.Generator):
    """Failed logins from abroad, success on a new device, phone changed, transfers to a new payee."""
    k = len(cust)
    abroad = (w.home[cust] + rng.integers(1, len(COUNTRIES), k)) % len(COUNTRIES)
    dev, ip = w.fresh_devices(k), random_ips(abroad, rng)
    n_fail = rng.integers(2, 6, k)
    cf = np.repeat(np.arange(k), n_fail)
    t_fail = t0[cf] - rng.integers(20, 900, len(cf))
    t_profile = t0 + rng.integers(60, 300, k)
    parts_login = [
        logins(cust[cf], t_fail, FAILURE, dev[cf], ip[cf], abroad[cf]),
        logins(cust, t0, SUCCESS, dev, ip, abroad),
        logins(cust, t_profile, PROFILE, dev, ip, abroad),
    ]
    return transfers_to_new_payee(w, cust, t_profile, dev, ip, rng, "account_takeover"), parts_login


def sim_swap(w: World, cust: np.ndarray, t0: np.ndarray, rng: np.random.Generator):
    """MFA moved to a new SIM, password reset, login on a new device, then transfers."""
    k = len(cust)
    home = w.home[cust]
    dev, ip = w.fresh_devices(k), random_ips(home, rng)
    t_reset = t0 + rng.integers(60, 600, k)
    t_login = t_reset + rng.integers(60, 300, k)
    parts_login = [
        logins(cust, t0, MFA, dev, ip, home),
        logins(cust, t_reset, RESET, dev, ip, home),
        logins(cust, t_login, SUCCESS, dev, ip, home),
    ]
    return transfers_to_new_payee(w, cust, t_login, dev, ip, rng, "sim_swap"), parts_login


def transfers_to_new_payee(
    w: World, cust, t_after, dev, ip, rng: np.random.Generator, tag: str
) -> list[dict]:
    """1-3 transfers from the fraudster's session to one new payee (a mule account)."""
    k = len(cust)
    payee = w.fresh_payees(k)
    payee_country = np.where(rng.random(k) < 0.8, w.home[cust], rng.integers(0, len(COUNTRIES), k))
    rep = rng.integers(1, 4, k)
    idx = np.repeat(np.arange(k), rep)
    c = cust[idx]
    t = t_after[idx] + rng.integers(120, 3600, len(idx))
    amount = amounts(w, c, np.full(len(c), TRANSFER), rng, shift=0.1)
    return [txs(c, t, amount, TRANSFER, payee[idx], payee_country[idx], dev[idx], ip[idx], tag)]


def card_testing(w: World, cust: np.ndarray, t0: np.ndarray, rng: np.random.Generator):
    """Stolen card details: tiny online payments at new merchants, then larger ones; no bank login."""
    k = len(cust)
    dev = w.fresh_devices(k)
    where = np.where(rng.random(k) < 0.5, w.home[cust], rng.integers(0, len(COUNTRIES), k))
    ip = random_ips(where, rng)
    n_tiny, n_big = rng.integers(1, 3, k), rng.integers(1, 3, k)
    ti, tb = np.repeat(np.arange(k), n_tiny), np.repeat(np.arange(k), n_big)
    t_tiny = t0[ti] + rng.integers(0, 1200, len(ti))
    t_big = t0[tb] + rng.integers(1500, 5400, len(tb))
    ci, cb = cust[ti], cust[tb]
    ecom_i, ecom_b = np.full(len(ci), ECOM), np.full(len(cb), ECOM)
    return [
        txs(
            ci,
            t_tiny,
            micro_amounts(rng, len(ci)),
            ECOM,
            random_merchant(ecom_i, where[ti], rng),
            -1,
            dev[ti],
            ip[ti],
            "card_testing",
        ),
        txs(
            cb,
            t_big,
            amounts(w, cb, ecom_b, rng, shift=0.5),
            ECOM,
            random_merchant(ecom_b, where[tb], rng),
            -1,
            dev[tb],
            ip[tb],
            "card_testing",
        ),
    ], []


def stolen_card(w: World, cust: np.ndarray, t0: np.ndarray, rng: np.random.Generator):
    """A physical card stolen: a burst of shop payments at new places and a cash withdrawal."""
    k = len(cust)
    cash = rng.random(k) < 0.8
    idx = np.repeat(np.arange(k), rng.integers(1, 4, k) + cash)
    last_of = np.r_[idx[1:] != idx[:-1], True]
    channel = np.where(last_of & cash[idx], ATM, POS)
    c = cust[idx]
    t = t0[idx] + rank_in_group(idx) * rng.integers(300, 2400, len(idx))
    merchant = random_merchant(channel, w.home[c], rng)
    return [
        txs(c, t, amounts(w, c, channel, rng, shift=0.2), channel, merchant, -1, -1, -1, "stolen_card")
    ], []


FRAUD_BUILDERS = (account_takeover, card_testing, sim_swap, stolen_card)


def frauds(w: World, days: int, cfg: GenerateConfig, rng: np.random.Generator):
    """Victims drawn per customer-day, spread over all days, one scenario each."""
    cust, day = customer_days(rng, cfg.fraud_rate, w.n, days)
    t0 = day * DAY + seconds_of_day(rng, len(cust))
    kind = rng.choice(len(FRAUD_BUILDERS), len(cust), p=np.array(cfg.fraud_mix) / sum(cfg.fraud_mix))
    parts_tx, parts_login = [], []
    for j, build in enumerate(FRAUD_BUILDERS):
        tx, lg = build(w, cust[kind == j], t0[kind == j], rng)
        parts_tx += tx
        parts_login += lg
    return parts_tx, parts_login


# ---------------------------------------------------------------- assembly


def _stack(parts: list[dict], days: int) -> dict[str, np.ndarray]:
    """Concatenate blocks, keep what falls inside the generated days, and sort by time."""
    cols = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    inside = np.flatnonzero((cols["t"] >= 0) & (cols["t"] < days * DAY))
    key = cols["t"][inside] * (cols["cust"].max(initial=0) + 1) + cols["cust"][inside]
    order = inside[np.argsort(key)]  # deterministic; ties are one customer's events in one second
    return {key: v[order] for key, v in cols.items()}


def derive_transaction_columns(w: World, tx: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Category, country and card follow from the merchant and channel, as they would in a bank."""
    ch, m = tx["channel"], tx["merchant"]
    pos_cat = np.array([CATEGORIES.index(c) for c in POS_CATEGORIES])
    ecom_cat = np.array([CATEGORIES.index(c) for c in ECOM_CATEGORIES])
    is_pos, is_ecom, is_atm = ch == POS, ch == ECOM, ch == ATM
    safe_pos = np.where(is_pos, m, 0)
    safe_ecom = np.where(is_ecom, m - ECOM_OFFSET, 0)
    category = np.select(
        [is_pos, is_ecom, is_atm],
        [pos_cat[w.pos_cat[safe_pos]], ecom_cat[w.ecom_cat[safe_ecom]], CATEGORIES.index("6011")],
        CATEGORIES.index("4829"),
    )
    country = np.select(
        [is_pos, is_ecom, is_atm],
        [m // POS_PER_COUNTRY, w.ecom_country[safe_ecom], (m - ATM_OFFSET) // ATM_PER_COUNTRY],
        tx["payee_country"],
    )
    offline = is_pos | is_atm
    return tx | {
        "category": category,
        "country": country,
        "card": np.where(ch == TRANSFER, -1, tx["cust"]),
        "device": np.where(offline, -1, tx["device"]),
        "ip": np.where(offline, -1, tx["ip"]),
    }


@cache
def _text_table(fmt: str, k: int) -> np.ndarray:
    """(k, width) bytes of ``fmt`` applied to 0..k-1: lookup tables that turn numbers into text."""
    text = "".join(fmt.format(i >> 8, i & 255, i) for i in range(k))
    return np.frombuffer(text.encode(), np.uint8).reshape(k, -1)


def _fixed_width_text(chars: np.ndarray) -> pl.Series:
    """A String series from an (n, w) byte matrix: one buffer for all rows, no per-row Python."""
    n, w = chars.shape
    offsets = np.arange(n + 1, dtype=np.int64) * w
    text = pa.LargeStringArray.from_buffers(
        n, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(chars))
    )
    return pl.Series(pl.from_arrow(text))


def _ips(ips: np.ndarray) -> pl.Series:
    """Dotted text of ``random_ips`` ints (octets 100-255, so always 15 characters), null where -1."""
    safe, pairs = np.maximum(ips, 0), _text_table("{0:03d}.{1:03d}", 65_536)
    dot = np.full((len(ips), 1), ord("."), np.uint8)
    text = _fixed_width_text(np.hstack([pairs[safe >> 16], dot, pairs[safe & 65_535]]))
    return text.scatter(np.flatnonzero(ips < 0), None) if (ips < 0).any() else text


def _event_ids(prefix: str, n: int) -> pl.Series:
    """Sequential ids like ``t0000000042`` (ten digits), written as fixed-width bytes."""
    i, digits = np.arange(n), _text_table("{2:05d}", 100_000)
    head = np.full((n, 1), ord(prefix), np.uint8)
    return _fixed_width_text(np.hstack([head, digits[i // 100_000 % 100_000], digits[i % 100_000]]))


def _ids(prefix: str, numbers: np.ndarray, width: int) -> pl.Series:
    """``prefix`` + zero-padded number, null where -1; each distinct number is formatted once."""
    top = int(numbers.max(initial=-1)) + 1
    if top <= len(numbers):  # dense numbers (customers, cards, devices): no sort needed
        uniq, inverse = np.arange(-1, top), numbers + 1
    else:
        uniq, inverse = np.unique(numbers, return_inverse=True)
    number = pl.lit(pl.Series(uniq))
    head: pl.Expr = pl.lit(prefix)
    if prefix == "M":  # merchants: web shops and shops M, ATMs A, payees P
        kind = pl.when(number >= PAYEE_OFFSET).then(pl.lit("P")).when(number >= ATM_OFFSET).then(pl.lit("A"))
        head = kind.otherwise(pl.lit("M"))
    text = pl.concat_str([head, number.cast(pl.String).str.zfill(width)])
    return pl.select(pl.when(number >= 0).then(text)).to_series().gather(inverse)


def _names(col: str, names: tuple[str, ...]) -> pl.Expr:
    return pl.lit(pl.Series(names, dtype=pl.String)).gather(pl.col(col))


def _time(col: str, start_s: int) -> pl.Expr:
    return pl.from_epoch(pl.col(col) + start_s, time_unit="s").cast(pl.Datetime("us", "UTC"))


def transactions_frame(tx: dict[str, np.ndarray], start_s: int) -> pl.DataFrame:
    """The transactions log, columns in contract order, event ids increasing with time."""
    df = pl.DataFrame({key: tx[key] for key in ("t", "amount", "country", "category", "channel")})
    return df.select(
        event_id=_event_ids("t", len(tx["t"])),
        customer_id=_ids("C", tx["cust"], 6),
        event_time=_time("t", start_s),
        amount=pl.col("amount"),
        currency=_names("country", CURRENCIES),
        merchant_id=_ids("M", tx["merchant"], 7),
        merchant_category=_names("category", CATEGORIES),
        channel=_names("channel", CHANNELS),
        country=_names("country", COUNTRIES),
        card_id=_ids("K", tx["card"], 7),
        device_id=_ids("D", tx["device"], 7),
        ip_address=_ips(tx["ip"]),
    )


def logins_frame(lg: dict[str, np.ndarray], start_s: int) -> pl.DataFrame:
    df = pl.DataFrame({key: lg[key] for key in ("t", "kind", "country", "ua")})
    return df.select(
        event_id=_event_ids("l", len(lg["t"])),
        customer_id=_ids("C", lg["cust"], 6),
        event_time=_time("t", start_s),
        event_type=_names("kind", LOGIN_TYPES),
        device_id=_ids("D", lg["device"], 7),
        ip_address=_ips(lg["ip"]),
        country=_names("country", COUNTRIES),
        user_agent=_names("ua", USER_AGENTS),
    )


def truth_frame(
    tx: dict[str, np.ndarray],
    tx_df: pl.DataFrame,
    days: int,
    cfg: GenerateConfig,
    rng: np.random.Generator,
    start_s: int,
) -> pl.DataFrame:
    """Scenario and outcome of every transaction, with when its label is (or will be) reported."""
    fraud = tx["scenario"] >= len(GENUINE_SCENARIOS)
    disputed = ~fraud & (rng.random(len(fraud)) < cfg.genuine_label_share)
    lo, hi = cfg.label_delay_days
    delay = np.where(
        fraud, rng.integers(lo * DAY, hi * DAY + 1, len(fraud)), rng.integers(2 * DAY, 30 * DAY, len(fraud))
    )
    reported = np.where(fraud | disputed, tx["t"] + delay, -1)
    return pl.DataFrame(
        {"reported": reported, "scenario": tx["scenario"], "is_fraud": fraud.astype(np.int8)}
    ).select(
        tx_df["event_id"],
        tx_df["customer_id"],
        tx_df["event_time"],
        _names("scenario", SCENARIOS).alias("scenario"),
        pl.col("is_fraud"),
        pl.when(pl.col("reported") >= 0).then(_time("reported", start_s)).alias("label_reported_at"),
        ((pl.col("reported") >= 0) & (pl.col("reported") < days * DAY)).alias("label_written"),
    )


def labels_frame(truth: pl.DataFrame) -> pl.DataFrame:
    """The labels known by the last generated day, in order of reporting."""
    return (
        truth.filter(pl.col("label_written"))
        .select("event_id", "is_fraud", pl.col("label_reported_at").alias("reported_at"))
        .sort("reported_at", "event_id")
    )


def generate_frames(
    customers: int, days: int, start: date, seed: int = 0, cfg: GenerateConfig | None = None
) -> dict[str, pl.DataFrame]:
    """The three logs plus the hidden truth, in memory: pure and deterministic for a seed."""
    cfg = cfg or GenerateConfig()
    rng = np.random.default_rng(seed)
    w = build_world(customers, days, cfg, rng)
    parts_tx, parts_login = genuine_activity(w, days, cfg, rng)
    for builder in (new_phone, big_purchase, new_payee, frauds):
        tx, lg = builder(w, days, cfg, rng)
        parts_tx += tx
        parts_login += lg
    start_s = int(datetime(start.year, start.month, start.day, tzinfo=UTC).timestamp())
    tx_cols = derive_transaction_columns(w, _stack(parts_tx, days))
    lg_cols = _stack(parts_login, days)
    lg_cols["ua"] = lg_cols["device"] % len(USER_AGENTS)
    tx_df = transactions_frame(tx_cols, start_s)
    truth = truth_frame(tx_cols, tx_df, days, cfg, rng, start_s)
    return {
        "transactions": tx_df,
        "logins": logins_frame(lg_cols, start_s),
        "labels": labels_frame(truth),
        "truth": truth,
    }


def day_slices(df: pl.DataFrame, time_col: str, start: date, days: int) -> list[tuple[date, pl.DataFrame]]:
    """Each day in range with its rows (maybe none); ``df`` is sorted by ``time_col``."""
    days_since = (df[time_col].dt.date() - start).dt.total_days().to_numpy()
    bounds = np.searchsorted(days_since, np.arange(days + 1))
    return [(start + timedelta(days=d), df.slice(bounds[d], bounds[d + 1] - bounds[d])) for d in range(days)]


def write_file(df: pl.DataFrame, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.suffix == ".csv":
        df.write_csv(target)
    else:
        df.write_parquet(target, compression="snappy")


def write_logs(
    frames: dict[str, pl.DataFrame], out: Path, start: date, days: int, file_format: str, part: int = 0
) -> None:
    """One ``<log>/date=D/part-NNN`` file per log and day, empty days included, written in parallel."""
    jobs = [
        (rows, out / log / f"date={day.isoformat()}" / f"part-{part:03d}.{file_format}")
        for log, time_col in (
            ("transactions", "event_time"),
            ("logins", "event_time"),
            ("labels", "reported_at"),
        )
        for day, rows in day_slices(frames[log], time_col, start, days)
    ]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(lambda job: write_file(*job), jobs))  # polars releases the GIL while writing


ID_COLUMNS = ("event_id", "customer_id", "card_id", "device_id")  # per-customer ids, tagged per chunk


def tag_chunk_ids(frame: pl.DataFrame, chunk: int) -> pl.DataFrame:
    """Make a chunk's ids unique across chunks: ``C000042`` of chunk 7 becomes ``C007000042``.

    Merchants stay shared: every chunk's customers shop at the same merchants and payees.
    """
    tag = f"${{1}}{chunk:03d}"
    return frame.with_columns(pl.col(c).str.replace(r"^(.)", tag) for c in ID_COLUMNS if c in frame.columns)


def chunk_sizes(customers: int, chunk_customers: int | None) -> list[int]:
    """Customers per chunk: one chunk unless ``chunk_customers`` is smaller than ``customers``."""
    if chunk_customers is None or chunk_customers >= customers:
        return [customers]
    if chunk_customers < 1:
        raise UsageError(f"--chunk-customers must be at least 1 (got {chunk_customers})")
    full, rest = divmod(customers, chunk_customers)
    if full + (rest > 0) > 1000:
        raise UsageError(f"--chunk-customers {chunk_customers} makes more than 1000 chunks")
    return [chunk_customers] * full + ([rest] if rest else [])


def generate_landing(
    out: Path,
    customers: int,
    days: int,
    start: date,
    seed: int = 0,
    file_format: str = "parquet",
    chunk_customers: int | None = None,
    cfg: GenerateConfig | None = None,
) -> GenerateSummary:
    """Write a landing zone (CONTRACT.md section 1) and the hidden truth under ``out/_truth``.

    ``chunk_customers`` bounds memory for large zones: customers are generated ``chunk_customers``
    at a time (each chunk its own world and seed, its ids tagged with the chunk number) and
    every chunk writes its own ``part-NNN`` file of each day; the truth parts are then streamed
    into one file. Memory is one chunk's events, whatever the zone's size. One chunk (the
    default) writes exactly what ``generate_frames(customers, days, start, seed)`` holds.
    """
    if customers < 1 or days < 1:
        raise UsageError(f"--customers and --days must be at least 1 (got {customers} and {days})")
    if file_format not in ("parquet", "csv"):
        raise UsageError(f"--format must be parquet or csv (got {file_format!r})")
    sizes = chunk_sizes(customers, chunk_customers)
    began = time.perf_counter()
    out = Path(out)
    truth_path = out / "_truth" / "transactions.parquet"
    truth_path.parent.mkdir(parents=True, exist_ok=True)
    counts = dict.fromkeys(("transactions", "logins", "labels", "frauds"), 0)
    parts: list[Path] = []
    for k, n in enumerate(sizes):
        frames = generate_frames(n, days, start, seed if len(sizes) == 1 else seed * 1_000_003 + k, cfg)
        if len(sizes) > 1:
            frames = {name: tag_chunk_ids(frame, k) for name, frame in frames.items()}
        write_logs(frames, out, start, days, file_format, part=k)
        for log in ("transactions", "logins", "labels"):
            counts[log] += frames[log].height
        counts["frauds"] += int(frames["truth"]["is_fraud"].sum())
        if len(sizes) == 1:
            frames["truth"].write_parquet(truth_path)
        else:
            parts.append(truth_path.with_name(f".transactions-{k:03d}.parquet"))
            frames["truth"].write_parquet(parts[-1])
        del frames
    if parts:  # one truth file, streamed from the chunks' parts
        pl.scan_parquet(parts).sink_parquet(truth_path)
        for path in parts:
            path.unlink()
    return GenerateSummary(
        out=out,
        n_transactions=counts["transactions"],
        n_logins=counts["logins"],
        n_labels=counts["labels"],
        n_frauds=counts["frauds"],
        days=days,
        truth_path=truth_path,
        wall_s=time.perf_counter() - began,
    )
