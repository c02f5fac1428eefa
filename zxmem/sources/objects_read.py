"""Memory objects, reading: the files of ``/proc`` and the system calls
behind :func:`zxmem.sources.objects.add_objects`, and the reader threads and
processes that run them concurrently.

* a process's ``smaps`` / ``maps`` (:func:`read_smaps`, and ``maps`` plus one
  ``PAGEMAP_SCAN`` ioctl where only resident and anonymous bytes are wanted:
  :func:`read_maps_resident`);
* a process's identity from ``stat`` and ``cmdline`` (:func:`read_process`,
  :func:`light_snapshot`);
* ``cachestat(2)`` for a file's page cache (:class:`_CacheStat`);
* :func:`_read_all` (threads) and :func:`_read_forked` (reader processes
  passing pickled results) hand every process to the collector's
  ``read_one`` and its result back to ``finish_one``, in scan order.

What the bytes mean is parsed in :mod:`zxmem.sources.smaps`,
:mod:`zxmem.sources.procfs` and :mod:`zxmem.sources.objects_parse`; what the
objects are is built in :mod:`zxmem.sources.objects`.
"""

from __future__ import annotations

import errno
import os
import queue
import signal
import struct
import threading
from bisect import bisect_right
from collections.abc import Collection
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from zxmem.model import (
    PAGE_SIZE,
    Job,
    Process,
    Provenance,
    Snapshot,
)
from zxmem.runtime import switch_interval
from zxmem.sources import procfs, smaps
from zxmem.sources.readfile import errname as _errname
from zxmem.sources.readfile import read_file
from zxmem.sources.readfile import vanished as _gone

if TYPE_CHECKING:  # pragma: no cover
    from zxmem.sources.objects import _Collector, _Read

_READ_SIZE = 1 << 18

# cachestat(2) is number 451 in the generic syscall table and on x86-64
# (arch/x86/entry/syscalls/syscall_64.tbl); other architectures are not tried.
_CACHESTAT_NR = 451


class ProcessError(Exception):
    """Why a single process cannot be shown (commands turn it into one line)."""

    def __init__(self, pid: int, reason: str) -> None:
        super().__init__(f"pid {pid}: {reason}")
        self.pid = pid
        self.reason = reason


# ---------------------------------------------------------------------------
# Reading


def _read(path: str) -> bytes:
    return read_file(path, _READ_SIZE)


def read_smaps(path: str, keys: tuple[str, ...] = smaps.SMAPS_FIELDS) -> smaps.VmaTable:
    """Read and parse an smaps file, overlapping the two.

    Producing smaps is kernel work (page-table walks) done with the GIL
    released, so a reader thread fetches the next piece while this thread
    parses the last one; on a machine with two cores the parse costs little
    wall time beyond the read itself.  Raises ``OSError`` like ``open``.
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    stream = smaps.SmapsStream(keys)
    pieces: queue.SimpleQueue = queue.SimpleQueue()

    def reader() -> None:
        try:
            while True:
                chunk = os.read(fd, _READ_SIZE)
                pieces.put(chunk)
                if not chunk:
                    return
        except OSError as exc:
            pieces.put(exc)

    first = os.read(fd, _READ_SIZE)  # errors of the first read surface here
    if not first:
        os.close(fd)
        return stream.finish()
    stream.feed(first)
    # Hand the GIL back to the reader promptly.
    interval = switch_interval(0.0005)
    interval.__enter__()
    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    try:
        while True:
            chunk = pieces.get()
            if isinstance(chunk, OSError):
                raise chunk
            if not chunk:
                break
            stream.feed(chunk)
    finally:
        thread.join()
        os.close(fd)
        interval.__exit__(None, None, None)
    return stream.finish()


# PAGEMAP_SCAN (Linux ≥ 6.7, include/uapi/linux/fs.h): _IOWR('f', 16,
# struct pm_scan_arg), the argument being twelve u64s (96 bytes), the result
# an array of struct page_region {u64 start, end, categories}.
_PAGEMAP_SCAN = (3 << 30) | (96 << 16) | (ord("f") << 8) | 16
_PAGE_IS_FILE = 1 << 2
_PAGE_IS_PRESENT = 1 << 3
_PAGE_IS_PFNZERO = 1 << 5
_SCAN_VEC = 8192  # regions per ioctl call
_USER_END = 1 << 63  # the kernel half ([vsyscall]) is not scanned


def scan_resident(pagemap_fd: int, start: int, end: int) -> list[int]:
    """Resident runs of ``[start, end)``: a flat list ``start, end, cats, ...``.

    One ``PAGEMAP_SCAN`` ioctl on ``/proc/PID/pagemap`` returns up to
    ``_SCAN_VEC`` runs of present pages, each with its ``PAGE_IS_FILE`` and
    ``PAGE_IS_PFNZERO`` bits (Documentation/admin-guide/mm/pagemap.rst,
    "PAGEMAP_SCAN"); the walk resumes from ``walk_end`` until the range is
    done.  Raises ``OSError`` (ENOTTY/EINVAL before 6.7).
    """
    import array
    import fcntl

    vec = array.array("Q", bytes(24 * _SCAN_VEC))
    address = vec.buffer_info()[0]
    out: list[int] = []
    while start < end:
        arg = array.array("Q", [96, 0, start, end, 0, address, _SCAN_VEC, 0, 0,
                                _PAGE_IS_PRESENT, 0, _PAGE_IS_FILE | _PAGE_IS_PFNZERO])
        n = fcntl.ioctl(pagemap_fd, _PAGEMAP_SCAN, arg, True)
        out += vec[: 3 * n]
        walk_end = arg[4]
        if walk_end <= start:
            break
        start = walk_end
    return out


def attribute_runs(table: smaps.VmaTable, runs: list[int]) -> None:
    """Fill ``Rss`` and ``Anonymous`` of ``table`` from resident runs.

    smaps counts in ``Rss`` the pages mapped in the VMA's page tables except
    the shared zero page (``vm_normal_page`` gives NULL for it); ``Anonymous``
    the anonymous ones (``PAGE_IS_FILE`` clear).  A run may cover several
    VMAs (the kernel merges contiguous pages with equal categories).
    """
    starts, ends = table.starts, table.ends
    n = len(starts)
    rss = [0] * n
    anon = [0] * n
    for i in range(0, len(runs), 3):
        s, e, cats = runs[i], runs[i + 1], runs[i + 2]
        if cats & _PAGE_IS_PFNZERO:
            continue
        is_anon = not cats & _PAGE_IS_FILE
        k = bisect_right(ends, s)
        while k < n and starts[k] < e:
            got = min(e, ends[k]) - max(s, starts[k])
            rss[k] += got
            if is_anon:
                anon[k] += got
            k += 1
    table.fields = {"Rss": rss, "Anonymous": anon}


def read_maps_resident(proc: str, pid: int) -> smaps.VmaTable:
    """``maps`` plus resident bytes from ``PAGEMAP_SCAN``: vmaps's fast path.

    ``/proc/PID/maps`` costs the kernel about a quarter of ``smaps``, and one
    scan of the page tables gives what vmaps prints of smaps (``Rss``, and
    ``Anonymous`` to tell copy-on-write clones).  Not the same instant as the
    maps read: a VMA changed in between is counted as the scan saw it.  No
    ``VmFlags``.  Raises ``OSError`` when either file or the ioctl fails; the
    caller then reads ``smaps``.  hugetlb pages count here but not in smaps.
    """
    table = smaps.parse_maps(_read(f"{proc}/{pid}/maps"))
    user = [e for e in table.ends if e < _USER_END]
    runs: list[int] = []
    if user:
        fd = os.open(f"{proc}/{pid}/pagemap", os.O_RDONLY | os.O_CLOEXEC)
        try:
            runs = scan_resident(fd, table.starts[0], max(user))
        finally:
            os.close(fd)
    attribute_runs(table, runs)
    return table


def read_process(proc_root: str, pid: int) -> Process:
    """A Process from ``/proc/PID/stat`` and ``cmdline`` only (cheap).

    Raises :class:`ProcessError` when there is no such process.
    """
    base = f"{proc_root.rstrip('/') or '/'}/{pid}/"
    try:
        st = procfs.parse_stat(_read(base + "stat"))
    except OSError as exc:
        if _gone(exc):
            raise ProcessError(pid, "no such process") from None
        raise ProcessError(pid, f"cannot read its stat ({_errname(exc)})") from None
    except procfs.ParseError as exc:
        raise ProcessError(pid, str(exc)) from None
    try:
        cmdline: tuple[str, ...] | None = procfs.parse_cmdline(_read(base + "cmdline"))
    except OSError:
        cmdline = None
    return Process(
        koid=pid,
        name=st.comm,
        job_koid=0,
        ppid=st.ppid,
        cmdline=cmdline,
        state=st.state,
        kernel_thread=st.kernel_thread,
        num_threads=st.num_threads,
    )


_LIGHT_ROOT_JOB = 1  # the single job of a light snapshot


def light_snapshot(proc_root: str = "/proc", pids: Collection[int] | None = None) -> Snapshot:
    """A Snapshot of processes read from ``stat`` only, under one root job.

    For commands that show memory objects and need no PSS or cgroups:
    ``vmaps`` and ``vmos`` start from it.  Kernel threads and processes that
    vanish are left out unless they were asked for by PID (then the caller
    sees ``kernel_thread``); an asked-for PID that does not exist raises
    :class:`ProcessError`.
    """
    proc = proc_root.rstrip("/") or "/"
    explicit = pids is not None
    if pids is None:
        pids = sorted(int(n) for n in os.listdir(proc) if n.isdigit())
    processes = []
    for pid in pids:
        try:
            p = read_process(proc, pid)
        except ProcessError:
            if explicit:
                raise
            continue
        if p.kernel_thread and not explicit:
            continue
        processes.append(replace(p, job_koid=_LIGHT_ROOT_JOB))
    return Snapshot(
        provenance=Provenance(source="linux"),
        jobs=(Job(_LIGHT_ROOT_JOB, "root", 0, path=""),),
        processes=tuple(processes),
    )



# ---------------------------------------------------------------------------
# cachestat


class _CacheStat:
    """``cachestat(2)`` through ctypes; ``None`` results when unavailable."""

    def __init__(self) -> None:
        self.fn = None
        self.failure: str | None = None
        import platform

        if platform.machine() not in ("x86_64", "aarch64", "arm64", "riscv64"):
            self.failure = "cachestat: not tried on this architecture"
            return
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            self.ctypes = ctypes
            self.fn = libc.syscall
            self.fn.restype = ctypes.c_long
            self.range = (ctypes.c_uint64 * 2)(0, 0)  # off, len (0 = to EOF)
            self.result = (ctypes.c_uint64 * 5)()
        except (OSError, AttributeError):
            self.failure = "cachestat: no libc syscall()"

    def cached_bytes(self, fd: int) -> int | None:
        if self.fn is None:
            return None
        ct = self.ctypes
        rc = self.fn(
            ct.c_long(_CACHESTAT_NR), ct.c_uint(fd), ct.byref(self.range),
            ct.byref(self.result), ct.c_uint(0),
        )
        if rc != 0:
            err = ct.get_errno()
            if err == errno.ENOSYS:
                self.fn = None
                self.failure = "no cachestat (Linux < 6.5): page cache of files unknown"
            elif err in (errno.EPERM, errno.EACCES):
                self.failure = "cachestat refused (EPERM): page cache of some files unknown"
            return None
        return int(self.result[0]) * PAGE_SIZE


class _Gone(Exception):
    pass


def _read_parse_smaps(path: str, keys: tuple[str, ...]) -> smaps.VmaTable:
    """Read and parse an smaps file piecewise on this thread (the reader
    threads of :func:`_read_all` overlap each other instead)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    stream = smaps.SmapsStream(keys)
    try:
        while True:
            chunk = os.read(fd, _READ_SIZE)
            if not chunk:
                break
            stream.feed(chunk)
    finally:
        os.close(fd)
    return stream.finish()


_CHUNK = 8  # processes per unit of work handed to a reader thread


def _read_all(
    collector: _Collector, items: list[tuple[int, bool]], keys: tuple[str, ...],
    handles: bool, workers: int = 0,
):
    """Yield ``(pid, detail, _Read)`` for ``items`` in their order.

    Reader threads fetch processes ahead of the caller: reading ``/proc`` is
    kernel work done with the GIL released (page-table walks for smaps), so
    the reads of several processes overlap on every core while this thread
    parses finished ones and turns them into records.  The readers do not
    parse a smaps that fits in one read (nearly all of them): a reader
    holding the GIL for a parse keeps the others from going back into the
    kernel, and each of the handful of system calls per process waits for
    the GIL in turn, so parsing on the readers made the reads and the
    parses take turns instead of overlapping.  A larger smaps is parsed
    piece by piece by its reader, so what waits unparsed stays small.  At
    most a few chunks wait unconsumed, which bounds memory.  One process
    alone is read on this thread (with :func:`read_smaps`'s overlapped
    reader).
    """
    if len(items) <= 1:
        for pid, detail in items:
            yield pid, detail, collector.read_one(pid, detail, keys, handles, True)
        return
    chunks = [items[i : i + _CHUNK] for i in range(0, len(items), _CHUNK)]
    if workers <= 0:
        workers = min(4, max(2, (os.cpu_count() or 1) * 2))
    pool = _ReaderThreads(collector, chunks, keys, handles, min(workers, len(chunks)))
    try:
        for k in range(len(chunks)):
            for pid, detail, r in pool.take(k):
                collector.finish_one(pid, r, detail, keys)
                yield pid, detail, r
    finally:
        pool.stop()


class _ReaderThreads:
    """The reader threads of :func:`_read_all`: chunk ``k``'s results are
    :meth:`take` ``(k)``, in order; at most ``4 * workers`` chunks are read
    ahead of the consumer, which bounds memory."""

    def __init__(self, collector: _Collector, chunks: list[list[tuple[int, bool]]],
                 keys: tuple[str, ...], handles: bool, workers: int) -> None:
        self.collector, self.keys, self.handles = collector, keys, handles
        self.results: list = [None] * len(chunks)
        self.ready = [threading.Event() for _ in chunks]
        self.ahead = threading.Semaphore(4 * workers)
        self.todo = iter(enumerate(chunks))
        self.stopped: list[bool] = []
        self.threads = [threading.Thread(target=self.work, daemon=True) for _ in range(workers)]
        for t in self.threads:
            t.start()

    def work(self) -> None:
        collector, keys, handles = self.collector, self.keys, self.handles
        while True:
            self.ahead.acquire()
            if self.stopped:
                return
            try:
                k, part = next(self.todo)  # atomic under the GIL
            except StopIteration:
                return
            try:
                got: object = [
                    (pid, detail, collector.read_one(pid, detail, keys, handles, False, True))
                    for pid, detail in part
                ]
            except BaseException as exc:  # handed to the consumer
                got = exc
            self.results[k] = got
            self.ready[k].set()

    def take(self, k: int) -> list:
        """Chunk ``k``'s ``(pid, detail, _Read)`` list; re-raises a reader's error."""
        self.ready[k].wait()
        got = self.results[k]
        self.results[k] = None
        self.ahead.release()
        if isinstance(got, BaseException):
            raise got
        return got

    def stop(self) -> None:
        self.stopped.append(True)
        for _ in self.threads:
            self.ahead.release()
        for t in self.threads:
            t.join()


_READERS = 2  # reader processes
# A smaps larger than this is parsed by its reader, piece by piece, rather
# than handed over whole (60,000 mappings make 20 MB of text).
_DEFER_MAX = 1 << 20


def _read_forked(
    collector: _Collector, items: list[tuple[int, bool]], keys: tuple[str, ...],
    handles: bool, workers: int = 0, readers: ForkedReaders | None = None,
):
    """:func:`_read_all`'s results, read by forked reader processes.

    The readers read (the kernel's work) and parse each smaps into its
    columns (and the process totals), and hand each chunk of processes back
    through a pipe, chunk ``k`` from reader ``k % _READERS``; this process
    builds the records.  Reader threads in this process cannot do that as
    well: every system call they make (a dozen or more per process: the
    smaps and status reads, the descriptors) needs the GIL back afterwards
    and waits while this thread works, so reading and parsing mostly took
    turns.  Handing the text over unparsed left the parse on this process,
    the one that everything waits for; parsed columns are also much less to
    pickle and pipe than the text.  Two readers keep ahead of this
    process.  The pipes (1 MiB when the kernel allows) bound
    what is read ahead.  If a reader cannot start or dies, what was not
    delivered is read here with threads.

    ``readers``: reader processes started earlier (:class:`ForkedReaders`,
    before the caller read the process list it passes as ``items``): their
    results are taken for the items they read, in ``items`` order; what
    they did not read (a process started since, or not read as ``items``
    asks) is read here, and what ``items`` does not ask for is dropped.
    """
    if readers is None:
        readers = ForkedReaders(collector, items, keys, handles)
    try:
        yield from _merged(collector, readers, items, keys, handles, workers)
    finally:
        readers.close()


def _merged(collector: _Collector, readers: ForkedReaders, items: list[tuple[int, bool]],
            keys: tuple[str, ...], handles: bool, workers: int):
    """``items``' ``(pid, detail, _Read)`` in order: from ``readers`` where
    they read the process as asked, else read here."""
    pending: dict[int, _Read] = {}  # received, not yet handed on
    wanted = dict(items)
    stream = readers.received()
    for n, (pid, detail) in enumerate(items):
        if readers.detail.get(pid) == detail:
            while pid not in pending and stream is not None:
                got = next(stream, None)
                if got is None:
                    stream = None  # a reader died: the rest is read below
                    break
                results, scan, notes = got
                collector.scan = collector.scan and scan
                collector.notes.update(notes)
                for p, d, r in results:
                    if wanted.get(p) == d:
                        pending[p] = r
            if stream is None and pid not in pending:
                yield from _rest(collector, items[n:], pending, keys, handles, workers)
                return
        if pid in pending:
            r = pending.pop(pid)
            collector.finish_one(pid, r, detail, keys)
            yield pid, detail, r
        else:
            yield from _read_all(collector, [(pid, detail)], keys, handles, workers)


def _rest(collector: _Collector, rest: list[tuple[int, bool]], pending: dict[int, _Read],
          keys: tuple[str, ...], handles: bool, workers: int):
    """``rest`` in order once the readers stopped delivering: what was
    received from them, and the others read here with threads."""
    fresh = _read_all(collector, [it for it in rest if it[0] not in pending], keys, handles,
                      workers)
    for pid, detail in rest:
        if pid in pending:
            r = pending.pop(pid)
            collector.finish_one(pid, r, detail, keys)
            yield pid, detail, r
        else:
            yield next(fresh)


class ForkedReaders:
    """Reader processes forked to read ``items`` (``(pid, detail)``) in
    chunks (see :func:`_read_forked`).

    A reader takes the next chunk's number from a shared pipe, reads the
    chunk and writes it back through its own pipe: whichever reader is free
    takes the next chunk, so one that the scheduler holds back (three
    processes on two CPUs, or another program) delays no other.  The
    numbers are handed out at most ``_AHEAD`` chunks beyond the last one
    received, which bounds what waits in memory; each reader's pipe (1 MiB,
    some 15 chunks) holds what it read before the caller takes it: the
    readers start before the caller has its process list, and fill their
    pipes meanwhile.

    ``readers`` is empty when none could be started (every item is then
    read by the caller).  :meth:`close` reaps them (killed first unless
    everything was received); call it in every case, it may be called
    again."""

    def __init__(self, collector: _Collector, items: list[tuple[int, bool]],
                 keys: tuple[str, ...], handles: bool) -> None:
        self.keys, self.handles, self.memory = keys, handles, collector.memory
        self.chunks = [items[i : i + _CHUNK] for i in range(0, len(items), _CHUNK)]
        self.readers: list[tuple[int, int]] = []  # (result pipe's fd, pid)
        self.taken = 0  # chunks received
        self.issued = 0  # chunk numbers handed out
        self.todo: int | None = None  # the writing end of the numbers' pipe
        try:
            todo_r, self.todo = os.pipe()
        except OSError:
            self.detail: dict[int, bool] = {}
            return
        for _ in range(min(_READERS, len(self.chunks))):
            started = _start_reader(collector, self.chunks, keys, handles, todo_r,
                                    [self.todo] + [r[0] for r in self.readers])
            if started is None:
                break
            self.readers.append(started)
        os.close(todo_r)
        self.detail = dict(items) if self.readers else {}
        if self.readers:
            self._hand_out()
        else:
            self.close()

    def fits(self, keys: tuple[str, ...], handles: bool, memory: bool) -> bool:
        """Whether the readers read what a caller with these options wants."""
        return bool(self.readers) and (keys, handles, memory) == (
            self.keys, self.handles, self.memory)

    def _hand_out(self) -> None:
        """Chunk numbers up to ``_AHEAD`` beyond the last received; the
        numbers' pipe is closed after the last (the readers then end)."""
        end = min(self.taken + _AHEAD, len(self.chunks))
        try:
            while self.todo is not None and self.issued < end:
                os.write(self.todo, _TOKEN.pack(self.issued))
                self.issued += 1
        except OSError:  # no reader left to take them
            self.issued = len(self.chunks)
        if self.todo is not None and self.issued >= len(self.chunks):
            os.close(self.todo)
            self.todo = None

    def received(self):
        """Each chunk's ``(results, scan, notes)`` in chunk order, until all
        are received or a reader ends early (dies, or cannot be read)."""
        import pickle
        import select

        waiting: dict[int, Any] = {}  # received ahead of their turn
        fds = [fd for fd, _pid in self.readers]
        while self.readers and self.taken < len(self.chunks):
            while self.taken not in waiting:
                if not fds:
                    return  # every reader ended: what is missing never comes
                for fd in select.select(fds, [], [])[0]:
                    frame = _receive(fd)
                    if frame is None:  # this reader ended
                        if self.todo is not None:
                            return  # before its work was handed out: it died
                        fds.remove(fd)
                        continue
                    waiting[frame[0]] = frame[1]
            got = pickle.loads(waiting.pop(self.taken))
            self.taken += 1
            self._hand_out()
            yield got

    def close(self) -> None:
        readers, self.readers, self.detail = self.readers, [], {}
        if self.todo is not None:
            os.close(self.todo)
            self.todo = None
        _stop_readers(readers, finished=self.taken >= len(self.chunks))


_AHEAD = 64  # chunks handed out beyond the last one received (the pipes bound it too)
_TOKEN = struct.Struct("=I")  # a chunk's number in the numbers' pipe
_HEAD = struct.Struct("=IQ")  # a result's chunk number and pickle size


def _start_reader(
    collector: _Collector, chunks: list[list[tuple[int, bool]]],
    keys: tuple[str, ...], handles: bool, todo: int, others: list[int],
) -> tuple[int, int] | None:
    """Fork a reader taking chunk numbers from ``todo``: its pipe's reading
    end and its pid, or None when it cannot be started.  ``others``: the
    caller's descriptors the reader closes (the numbers' writing end, the
    other readers' pipes)."""
    try:
        rfd, wfd = os.pipe()
    except OSError:
        return None
    try:
        import fcntl

        fcntl.fcntl(wfd, getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
    except OSError:
        pass  # the default pipe size only reads less far ahead
    try:
        pid = os.fork()
    except OSError:
        os.close(rfd)
        os.close(wfd)
        return None
    if pid == 0:  # a reader: never back into the caller's code
        code = 1
        try:
            os.close(rfd)
            for other in others:
                os.close(other)
            _reader_main(collector, chunks, keys, handles, todo, wfd)
            code = 0
        finally:
            os._exit(code)
    os.close(wfd)
    return rfd, pid


def _reader_main(collector: _Collector, chunks: list[list[tuple[int, bool]]],
                 keys: tuple[str, ...], handles: bool, todo: int, wfd: int) -> None:
    """A reader process's work: each chunk whose number comes through
    ``todo`` read, parsed and written to ``wfd``, until ``todo`` ends.

    Parsed here: a reader is a process of its own, so its parse runs beside
    the parent's work (threads' parses would take turns for the GIL), and
    the parsed columns are a tenth of the text through the pipe."""
    import pickle

    while token := _read_exact(todo, _TOKEN.size):
        (k,) = _TOKEN.unpack(token)
        got = [(p, d, collector.read_one(p, d, keys, handles, False)) for p, d in chunks[k]]
        blob = pickle.dumps((got, collector.scan, sorted(collector.notes)), 5)
        view = memoryview(_HEAD.pack(k, len(blob)) + blob)
        while view:
            view = view[os.write(wfd, view):]


def _read_exact(fd: int, size: int) -> bytearray | None:
    """``size`` bytes from ``fd`` (a pipe), or None at its end first.  Never
    reads beyond them, so that the next read finds the next message."""
    buf = bytearray(size)
    view = memoryview(buf)
    got = 0
    while got < size:
        n = os.readv(fd, [view[got:]])
        if n == 0:
            return None
        got += n
    return buf


def _receive(fd: int) -> tuple[int, bytearray] | None:
    """One chunk's number and pickled ``(results, scan, notes)`` from a
    reader's pipe, or None when the reader ended before sending all of it."""
    head = _read_exact(fd, _HEAD.size)
    if head is None:
        return None
    k, size = _HEAD.unpack(head)
    blob = _read_exact(fd, size)
    return None if blob is None else (k, blob)


def _stop_readers(readers: list[tuple[int, int]], finished: bool) -> None:
    """Close the pipes and reap the readers; unless every process was
    delivered (given up on, or a reader died), kill them first."""
    for fd, _pid in readers:
        os.close(fd)
    for _fd, pid in readers:
        if not finished:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        os.waitpid(pid, 0)
