"""What is growing, how fast and since when: leak suspects from series of samples.

Pure: :func:`analyse` takes :class:`Series` (one per process, job or memory
object; built from the history store by :mod:`zxmem.growth_source`) and returns
:class:`Suspect` rows, most suspicious first.  No I/O, no clock.

The leak signal is a process's USS (Linux ``Private``): memory only it holds,
which it alone can have leaked.  PSS moves when *other* processes start or exit
(process-exporter#347), so it is shown beside USS, never judged; a job's cgroup
charge likewise.  An object's signal is its committed bytes.

Why these methods (and not a least-squares line over the samples):

* Memory series are not Gaussian noise around a line.  A garbage collector or
  an arena allocates then frees a large block again and again (a *sawtooth*);
  a cache fills and stops (a *plateau*); a file is loaded once (a *step*).
  A least-squares slope is pulled by every one of those: a sawtooth whose
  window happens to end on a peak "grows" by the whole peak.
* The rate is the **Theil–Sen** slope: the median of the slopes between every
  pair of points.  Up to ~29 % of the points can be anywhere without moving
  it, so the peaks of a sawtooth (or one odd sample) do not make a rate.
* A leak is memory that is never given back, so it shows in the **lower
  envelope**: the minimum of each time window (a window several samples long
  contains a trough of any sawtooth shorter than it).  A sawtooth over a
  flat base has flat minima; one over a leaking base has rising minima.
* **Steady** growth needs the window minima to rise step after step (the
  fraction of rising steps), not once (a step: one rising window, the rest
  flat), and to still rise in the second half of the series (a plateau: the
  first half rises, the second does not).  The minima's steps must also
  average well above zero for their spread (a t statistic): a random walk
  rises in most windows now and then, by chance.
* Growth that starts late in the period is judged from where it started.
* ``fit_r2`` (how much of the variance the line explains) is reported to say
  how *regular* the growth is; it is not the verdict, because a leak under a
  sawtooth has a poor r2 and is still a leak.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

KINDS = ("process", "job", "object")

# Fewer known points than this cannot tell a trend from noise.
MIN_POINTS = 6
# Theil–Sen over more points than this uses evenly spaced ones (the median of
# pairwise slopes is stable long before every pair is used; cost is n^2).
TS_POINTS = 48
# The lower envelope: at most this many windows, each at least WINDOW_MIN points.
MAX_WINDOWS = 20
WINDOW_MIN = 5
# Steady: at least this fraction of the window-minimum steps rise ...
STEADY_RISING = 0.75
# ... and the second half still grows at least this fraction of the whole rate.
STEADY_LATE = 0.5
# ... and the window-minimum steps have a mean this many standard errors above
# 0: a random walk (a process whose size drifts up and down by chance) rises
# in three quarters of its windows now and then, but its steps average about
# zero; a leak's steps are all of one sign.
STEADY_T = 4.0
# A leak must have grown at least this much over the series (one page of
# allocator noise is not a leak).
MIN_GROWTH_BYTES = 1 << 20
# Growth (rate over the series) below this is allocator noise: "flat", not listed.
NOISE_BYTES = 64 << 10
# ... and have been seen for at least this fraction of the period: a process
# that lived ten seconds of an hour grew while it started, which says
# nothing about a leak.
MIN_COVERAGE = 0.25


@dataclass(frozen=True)
class Series:
    """The samples of one thing over time.

    ``times_ns`` are wall-clock sample times (ns since the epoch, ascending);
    ``uss``, ``pss`` and ``charge`` hold one value per time in bytes, None where
    unknown (denied, not collected); an empty sequence means "not applicable"
    (a process has no charge of its own).  For an object series ``uss`` is the
    object's committed bytes.  ``uss_high``, when given, is the highest value
    between the previous point and this one (a store read downsampled keeps the
    lowest value of each bucket in ``uss`` and the highest here, so neither the
    envelope nor the high-water mark is lost).

    ``key`` is unique and stable (the store's identity of the thing); ``name``
    is untrusted text; ``identity`` holds what identifies it to a person
    (``pid``, ``job``, ``koid``, ``path``...).  ``objects`` are, for a process,
    the series of the memory objects it holds; ``object_kind`` says what an
    object series is (``heap``, ``stack``, ``anon``, ``memfd``, ``shmem``,
    ``file``...), ``hidden`` that it is held only by a descriptor.
    """

    key: str
    kind: str
    name: str
    times_ns: Sequence[int]
    uss: Sequence[int | None]
    pss: Sequence[int | None] = ()
    charge: Sequence[int | None] = ()
    identity: dict[str, Any] = field(default_factory=dict)
    uss_high: Sequence[int | None] = ()
    objects: Sequence[Series] = ()
    object_kind: str | None = None
    hidden: bool = False


@dataclass(frozen=True)
class GrownObject:
    """A memory object that grew inside a suspect process."""

    key: str
    name: str
    kind: str | None
    rate_bytes_per_second: float
    first_bytes: int
    last_bytes: int
    steady: bool
    hidden: bool = False
    identity: dict[str, Any] = field(default_factory=dict)

    @property
    def rate_bytes_per_hour(self) -> float:
        return self.rate_bytes_per_second * 3600.0

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key, "name": self.name, "kind": self.kind,
            "rate_bytes_per_second": round(self.rate_bytes_per_second, 3),
            "rate_bytes_per_hour": round(self.rate_bytes_per_hour),
            "first_bytes": self.first_bytes, "last_bytes": self.last_bytes,
            "steady": self.steady, "hidden": self.hidden,
            "identity": dict(self.identity),
        }


@dataclass(frozen=True)
class Suspect:
    """One thing that grew, with the evidence for and against a leak."""

    kind: str
    key: str
    name: str
    signal: str  # 'uss', 'pss', 'charge' (or 'committed' for an object)
    rate_bytes_per_second: float
    fit_r2: float | None  # None: the values do not vary at all
    steady: bool
    leak: bool
    growth_start_ns: int
    high_water_bytes: int
    high_water_ns: int
    first_bytes: int
    last_bytes: int
    first_ns: int
    last_ns: int
    points: int
    rising_fraction: float  # of the window-minimum steps
    envelope_rate_bytes_per_second: float  # Theil–Sen of the window minima
    late_rate_bytes_per_second: float  # Theil–Sen of the second half
    pss_rate_bytes_per_second: float | None = None
    pss_last_bytes: int | None = None
    charge_rate_bytes_per_second: float | None = None
    charge_last_bytes: int | None = None
    identity: dict[str, Any] = field(default_factory=dict)
    objects: tuple[GrownObject, ...] = ()
    why: str = ""  # one phrase: why it is (not) a leak
    # One word: leak, small (steady, grew too little), short (seen too
    # briefly), gone (ended before the period), sawtooth, plateau, step,
    # irregular.
    pattern: str = ""

    @property
    def rate_bytes_per_hour(self) -> float:
        return self.rate_bytes_per_second * 3600.0

    @property
    def grown_bytes(self) -> int:
        return self.last_bytes - self.first_bytes

    def to_json(self) -> dict[str, Any]:
        def r(x: float | None) -> float | None:
            return None if x is None else round(x, 3)

        return {
            "kind": self.kind, "key": self.key, "name": self.name,
            "identity": dict(self.identity), "signal": self.signal,
            "leak": self.leak, "steady": self.steady, "pattern": self.pattern,
            "why": self.why,
            "rate_bytes_per_second": r(self.rate_bytes_per_second),
            "rate_bytes_per_hour": round(self.rate_bytes_per_hour),
            "fit_r2": None if self.fit_r2 is None else round(self.fit_r2, 4),
            "rising_fraction": round(self.rising_fraction, 4),
            "envelope_rate_bytes_per_second": r(self.envelope_rate_bytes_per_second),
            "late_rate_bytes_per_second": r(self.late_rate_bytes_per_second),
            "growth_start_ns": self.growth_start_ns,
            "high_water_bytes": self.high_water_bytes, "high_water_ns": self.high_water_ns,
            "first_bytes": self.first_bytes, "last_bytes": self.last_bytes,
            "grown_bytes": self.grown_bytes,
            "first_ns": self.first_ns, "last_ns": self.last_ns, "points": self.points,
            "pss_rate_bytes_per_second": r(self.pss_rate_bytes_per_second),
            "pss_last_bytes": self.pss_last_bytes,
            "charge_rate_bytes_per_second": r(self.charge_rate_bytes_per_second),
            "charge_last_bytes": self.charge_last_bytes,
            "objects": [o.to_json() for o in self.objects],
        }


# --------------------------------------------------------------------------
# Robust statistics (pure Python on small inputs: at most TS_POINTS points).


def _median(xs: Sequence[float] | np.ndarray) -> float:
    """The median (np.median's overhead is most of the cost on small arrays)."""
    a = np.asarray(xs, dtype=np.float64)
    n = len(a)
    if n % 2:
        return float(np.partition(a, n // 2)[n // 2])
    p = np.partition(a, (n // 2 - 1, n // 2))
    return float(p[n // 2 - 1] + p[n // 2]) / 2.0


_Floats = Sequence[float] | np.ndarray


def _thin(ts: _Floats, ys: _Floats, most: int) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(ts, dtype=np.float64)
    y = np.asarray(ys, dtype=np.float64)
    n = len(t)
    if n <= most:
        return t, y
    idx = _THIN.get((n, most))
    if idx is None:
        idx = _THIN[(n, most)] = np.round(np.arange(most) * (n - 1) / (most - 1)).astype(np.int64)
    return t[idx], y[idx]


_THIN: dict[tuple[int, int], np.ndarray] = {}


_PAIRS: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def theil_sen(ts: _Floats, ys: _Floats) -> float:
    """The median of the slopes between all pairs of points with distinct times
    (over at most TS_POINTS evenly spaced points); 0.0 for fewer than two."""
    t, y = _thin(ts, ys, TS_POINTS)
    n = len(t)
    if n < 2:
        return 0.0
    pairs = _PAIRS.get(n)
    if pairs is None:
        pairs = _PAIRS[n] = np.triu_indices(n, 1)
    i, j = pairs
    dt = t[j] - t[i]
    keep = dt != 0
    if not keep.any():
        return 0.0
    return _median((y[j] - y[i])[keep] / dt[keep])


def _r2(ts: _Floats, ys: _Floats, slope: float) -> float | None:
    """The fraction of the variance of ``ys`` the line (``slope``, through the
    median residual) explains; None if ``ys`` is constant."""
    t = np.asarray(ts, dtype=np.float64)
    y = np.asarray(ys, dtype=np.float64)
    total = float(((y - y.mean()) ** 2).sum())
    if total == 0:
        return None
    b = _median(y - slope * t)
    resid = float(((y - (b + slope * t)) ** 2).sum())
    return max(0.0, 1.0 - resid / total)


def _windows(n: int) -> list[tuple[int, int]]:
    """Index ranges [a, b) of the envelope windows: as many as MAX_WINDOWS
    with at least WINDOW_MIN points each (at least two windows)."""
    w = max(2, min(MAX_WINDOWS, n // WINDOW_MIN))
    return [(i * n // w, (i + 1) * n // w) for i in range(w)]


def _known(times: Sequence[int], values: Sequence[int | None]
           ) -> tuple[list[int], list[int]]:
    if len(times) != len(values):
        raise ValueError("times and values differ in length")
    if None not in values:
        return list(times), list(values)  # type: ignore[arg-type]
    ts: list[int] = []
    ys: list[int] = []
    for t, v in zip(times, values, strict=True):
        if v is not None:
            ts.append(t)
            ys.append(v)
    return ts, ys


def _rate(times: Sequence[int], values: Sequence[int | None]) -> tuple[float | None, int | None]:
    if not values:
        return None, None
    ts, ys = _known(times, values)
    if len(ts) < 2:
        return None, (ys[-1] if ys else None)
    t0 = ts[0]
    return theil_sen([(t - t0) / 1e9 for t in ts], ys), ys[-1]


@dataclass(frozen=True)
class _Fit:
    rate: float
    r2: float | None
    steady: bool
    rising: float
    envelope: float
    late: float
    start_ns: int
    high: int
    high_ns: int
    first: int
    last: int
    first_ns: int
    last_ns: int
    points: int
    why: str
    pattern: str


@dataclass(frozen=True)
class _Judged:
    rate: float
    r2: float | None
    steady: bool
    rising: float
    envelope: float
    late: float
    pattern: str
    why: str


def _judge(ts: list[float], ys: list[int], min_growth: int,
           ta: np.ndarray | None = None, ya: np.ndarray | None = None) -> _Judged:
    """The rate and the verdict of points (times in seconds from the first;
    ``ta``/``ya``: the same as float64 arrays, if the caller has them)."""
    n = len(ts)
    if ta is None or ya is None:
        ta = np.asarray(ts, dtype=np.float64)
        ya = np.asarray(ys, dtype=np.float64)
    rate = theil_sen(ta, ya)
    grown = rate * (ts[-1] - ts[0])
    if grown < NOISE_BYTES:
        # Not growing: never listed (analyse leaves it out; an object must
        # grow more than this), so the rest of the evidence is not worked out.
        return _Judged(rate=rate, r2=None, steady=False, rising=0.0, envelope=0.0, late=0.0,
                       pattern="flat", why="not growing")
    r2 = _r2(ta, ya, rate)
    # The lower envelope: each window's minimum, at its time.
    mins_t: list[float] = []
    mins_y: list[float] = []
    for a, b in _windows(n):
        i = ys.index(min(ys[a:b]), a, b)  # the first of the lowest
        mins_t.append(ts[i])
        mins_y.append(ys[i])
    steps = [b - a for a, b in zip(mins_y, mins_y[1:], strict=False)]
    rising = sum(1 for s in steps if s > 0) / len(steps)
    envelope = theil_sen(mins_t, mins_y)
    half = n // 2
    late = theil_sen(ta[half:], ya[half:])
    rises = [x for x in steps if x > 0]
    st = np.asarray(steps, dtype=np.float64)
    spread = float(st.std(ddof=1)) if len(st) > 1 else 0.0
    mean = float(st.mean()) if len(st) else 0.0
    trend_t = (mean / (spread / len(st) ** 0.5) if spread > 0
               else (float("inf") if mean > 0 else 0.0))
    if rising < STEADY_RISING and rises and max(rises) >= 0.8 * sum(rises):
        steady, pattern, why = False, "step", "step: the lowest values rose at one time only"
    elif late < STEADY_LATE * rate:
        steady, pattern, why = False, "plateau", "plateau: the growth stopped in the second half"
    elif rising < STEADY_RISING and envelope <= 0.25 * rate:
        steady, pattern, why = False, "sawtooth", "sawtooth: the lowest values do not rise"
    elif rising < STEADY_RISING or trend_t < STEADY_T:
        steady, pattern = False, "irregular"
        why = "irregular: the lowest values rise in only some windows, or by chance"
    elif envelope < STEADY_LATE * rate:
        steady, pattern = False, "sawtooth"
        why = "sawtooth: the lowest values grow slower than the rate"
    else:
        steady, pattern, why = True, "leak", "steady growth"
    if steady and grown < min_growth:
        pattern, why = "small", "steady but small"
    return _Judged(rate=rate, r2=r2, steady=steady, rising=rising, envelope=envelope,
                   late=late, pattern=pattern, why=why)


def _mad(xs: Sequence[float]) -> float:
    m = _median(list(xs))
    return _median([abs(x - m) for x in xs])


def _fit(times: Sequence[int], values: Sequence[int | None],
         highs: Sequence[int | None], min_growth: int) -> _Fit | None:
    ts_ns, ys = _known(times, values)
    n = len(ts_ns)
    if n < MIN_POINTS or ts_ns[-1] <= ts_ns[0]:
        return None
    if ys.count(ys[0]) == n:
        # Constant (most memory objects): what the steps below find for it,
        # without them: a slope of 0, not growing, at its level to the end.
        high, high_ns = _high(ys[0], ts_ns[0], times, values, highs)
        return _Fit(rate=0.0, r2=None, steady=False, rising=0.0, envelope=0.0, late=0.0,
                    start_ns=ts_ns[-1], high=high, high_ns=high_ns, first=ys[0], last=ys[0],
                    first_ns=ts_ns[0], last_ns=ts_ns[-1], points=n, why="not growing",
                    pattern="flat")
    t0 = ts_ns[0]
    ts = [(t - t0) / 1e9 for t in ts_ns]
    ta = np.asarray(ts, dtype=np.float64)
    ya = np.asarray(ys, dtype=np.float64)
    j = _judge(ts, ys, min_growth, ta, ya)

    # Growth start: the last point still at the starting level, the first
    # window's minimum plus a tolerance for noise: twice the smaller of the
    # points' median distance from the line (0 for a clean line, which
    # starts at its first point) and the spread of the first window (0 for
    # a flat start, which ends where the growth starts).
    w0 = _windows(n)[0]
    base = min(ys[w0[0]:w0[1]])
    intercept = _median(ya - j.rate * ta)
    noise = _median(np.abs(ya - (intercept + j.rate * ta)))
    tol = base + 2 * min(noise, _mad(ys[w0[0]:w0[1]]))
    start = 0
    for i, y in enumerate(ys):
        if y <= tol:
            start = i
    # Growth that started late in the period: judge it from its start (a
    # leak that began an hour ago is a leak, however flat the hours before).
    if j.pattern != "leak" and 0 < start and n - start >= max(MIN_POINTS, n // 4):
        tail = _judge(ts[start:], ys[start:], min_growth, ta[start:], ya[start:])
        if tail.pattern == "leak":
            j = tail
    high, high_ns = _high(ys[0], ts_ns[0], times, values, highs)
    return _Fit(rate=j.rate, r2=j.r2, steady=j.steady, rising=j.rising, envelope=j.envelope,
                late=j.late, start_ns=ts_ns[start], high=high, high_ns=high_ns, first=ys[0],
                last=ys[-1], first_ns=ts_ns[0], last_ns=ts_ns[-1], points=n, why=j.why,
                pattern=j.pattern)


def _high(high: int, high_ns: int, times: Sequence[int], values: Sequence[int | None],
          highs: Sequence[int | None]) -> tuple[int, int]:
    """The highest of ``highs`` (``values`` if there are none) above
    ``high`` (the first point's), and its time (the first at that height)."""
    hv = highs if len(highs) == len(times) else values
    for t, v in zip(times, hv, strict=True):
        if v is not None and v > high:
            high, high_ns = v, t
    return high, high_ns


def _pick_signal(s: Series) -> tuple[str, Sequence[int | None]]:
    if s.kind == "object":
        return "committed", s.uss
    for name, vals in (("uss", s.uss), ("pss", s.pss), ("charge", s.charge)):
        if sum(1 for v in vals if v is not None) >= MIN_POINTS:
            return name, vals
    return "uss", s.uss


def grown_objects(s: Series, *, min_growth_bytes: int = MIN_GROWTH_BYTES // 4
                  ) -> tuple[GrownObject, ...]:
    """The objects of ``s`` that grew by at least ``min_growth_bytes``, fastest first."""
    out = []
    for o in s.objects:
        f = _fit(o.times_ns, o.uss, o.uss_high, min_growth_bytes)
        if f is None or f.rate <= 0 or f.rate * (f.last_ns - f.first_ns) / 1e9 < min_growth_bytes:
            continue
        out.append(GrownObject(key=o.key, name=o.name, kind=o.object_kind,
                               rate_bytes_per_second=f.rate, first_bytes=f.first,
                               last_bytes=f.last, steady=f.steady, hidden=o.hidden,
                               identity=dict(o.identity)))
    out.sort(key=lambda g: (-g.rate_bytes_per_second, g.key))
    return tuple(out)


def analyse(series: Iterable[Series], *, now_ns: int | None = None,
            min_rate_bytes_per_hour: float = 0.0,
            min_growth_bytes: int = MIN_GROWTH_BYTES) -> list[Suspect]:
    """Every series that grew (a positive rate of at least
    ``min_rate_bytes_per_hour``), leaks first, then by rate, fastest first.

    A series with fewer than MIN_POINTS known values of its signal is left
    out: it cannot be judged.  ``leak`` is steady growth of at least
    ``min_growth_bytes`` over the series.  ``now_ns`` (the end of the period
    looked at, default the newest sample) only matters for a series that
    ended before it: a thing that is gone is not leaking now.
    """
    out: list[Suspect] = []
    min_rate = min_rate_bytes_per_hour / 3600.0
    series = list(series)
    end = now_ns
    if end is None:
        end = max((s.times_ns[-1] for s in series if s.times_ns), default=0)
    begin = min((s.times_ns[0] for s in series if s.times_ns), default=0)
    for s in series:
        if s.kind not in KINDS:
            raise ValueError(f"unknown series kind {s.kind!r}")
        signal, values = _pick_signal(s)
        highs = s.uss_high if signal in ("uss", "committed") else ()
        f = _fit(s.times_ns, values, highs, min_growth_bytes)
        if f is None or f.pattern == "flat" or f.rate < min_rate:
            continue
        leak = f.pattern == "leak"
        why, pattern = f.why, f.pattern
        # Gone for more than a tenth of the period: it no longer holds the memory.
        if leak and end - f.last_ns > 0.1 * max(1, end - f.first_ns):
            leak, pattern = False, "gone"
            why = "gone: its last sample is older than the period's end"
        elif leak and f.last_ns - f.first_ns < MIN_COVERAGE * max(1, end - begin):
            leak, pattern = False, "short"
            why = "too short to tell: seen for under a quarter of the period"
        pss_rate, pss_last = _rate(s.times_ns, s.pss) if signal != "pss" else (f.rate, f.last)
        ch_rate, ch_last = (_rate(s.times_ns, s.charge) if signal != "charge"
                            else (f.rate, f.last))
        objs = grown_objects(s) if s.objects else ()
        out.append(Suspect(
            kind=s.kind, key=s.key, name=s.name, signal=signal,
            rate_bytes_per_second=f.rate, fit_r2=f.r2, steady=f.steady, leak=leak,
            growth_start_ns=f.start_ns, high_water_bytes=f.high, high_water_ns=f.high_ns,
            first_bytes=f.first, last_bytes=f.last, first_ns=f.first_ns, last_ns=f.last_ns,
            points=f.points, rising_fraction=f.rising, envelope_rate_bytes_per_second=f.envelope,
            late_rate_bytes_per_second=f.late,
            pss_rate_bytes_per_second=pss_rate if s.pss else None,
            pss_last_bytes=pss_last if s.pss else None,
            charge_rate_bytes_per_second=ch_rate if s.charge else None,
            charge_last_bytes=ch_last if s.charge else None,
            identity=dict(s.identity), objects=objs, why=why, pattern=pattern))
    out.sort(key=lambda x: (not x.leak, -x.rate_bytes_per_second, x.key))
    return out
