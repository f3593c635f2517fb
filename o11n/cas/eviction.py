"""What a capped blob store may drop: blobs in least-recently-used order, pins, keepers.

`LruIndex` is plain bookkeeping with no lock and no files: `CasStore` holds its
own lock around every call and does the file work, so that a rename or an
unlink and the index change that goes with it happen as one step.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

# An eviction pass drops blobs until the store is this fraction of its cap, so
# that the writes that follow do not each start a pass of their own.
LOW_WATER = 0.9
# A pass that cannot get under the cap (everything left is pinned or kept) is
# not tried again by writes for this long: each pass asks every keeper and walks
# the whole index, which a store stuck over its cap should not pay per write.
RETRY_SECONDS = 10.0
# A use moves a blob file's mtime (the last use a restart sees) only when the
# file's mtime is at least this far behind: at most one utime per blob per
# resolution, instead of a metadata write for every read and every FindMissing.
MTIME_RESOLUTION = 600.0

Keeper = Callable[[], Iterable[str]]
"""Asked at each eviction pass for the digests it still needs (never evicted)."""


def low_water(cap_bytes: int) -> int:
    """The total an eviction pass brings a store down to."""
    return int(cap_bytes * LOW_WATER)


@dataclass(slots=True)
class BlobEntry:
    """What the index knows of one stored blob."""

    size: int
    seq: int  # the index's use counter at this blob's last use
    mtime: float  # the blob file's mtime as last set (or found at start-up)

    def advance_mtime(self, now: float) -> bool:
        """After a use at `now`: is the file's mtime far enough behind to be moved? If so
        it is noted as moved (the caller moves it)."""
        if now - self.mtime < MTIME_RESOLUTION:
            return False
        self.mtime = now
        return True


class LruIndex:
    """The stored blobs, least recently used first, their total size, and the pins on them.

    Not thread-safe: the caller serialises every call. Each use takes the next
    value of a counter (`seq`), so the order of the entries is the order of
    their `seq`, and "used since an eviction pass began" is `seq >= bound`.
    """

    def __init__(self) -> None:
        self._entries: OrderedDict[str, BlobEntry] = OrderedDict()
        self._pins: Counter[str] = Counter()
        self.total = 0
        self.seq = 0

    def __len__(self) -> int:
        return len(self._entries)

    def load(self, blobs: Iterable[tuple[str, int, float]]) -> None:
        """Add blobs found on disk (digest, size, mtime), the oldest mtime as least recent."""
        for digest, size, mtime in sorted(blobs, key=lambda b: (b[2], b[0])):
            self.add(digest, size, mtime)

    def add(self, digest: str, size: int, now: float) -> BlobEntry:
        """A blob stored (again) at `now`: the most recently used."""
        old = self._entries.pop(digest, None)
        self.total += size - (old.size if old else 0)
        self.seq += 1
        entry = self._entries[digest] = BlobEntry(size, self.seq, now)
        return entry

    def use(self, digest: str) -> BlobEntry | None:
        """Make a stored blob the most recently used; None when it is not stored."""
        entry = self._entries.get(digest)
        if entry is not None:
            self.seq += 1
            entry.seq = self.seq
            self._entries.move_to_end(digest)
        return entry

    def remove(self, digest: str) -> None:
        """Forget a blob (its file is gone)."""
        entry = self._entries.pop(digest, None)
        if entry is not None:
            self.total -= entry.size

    def oldest_first(self) -> list[str]:
        """Every stored digest, the least recently used first."""
        return list(self._entries)

    def evictable(self, digest: str, bound: int) -> BlobEntry | None:
        """The entry of a blob that is stored, unpinned and unused since `bound`; else None."""
        entry = self._entries.get(digest)
        if entry is None or entry.seq >= bound or self._pins[digest]:
            return None
        return entry

    def pin(self, digests: Iterable[str]) -> None:
        """Hold blobs (stored or still to come) once more each."""
        self._pins.update(digests)

    def unpin(self, digests: Iterable[str]) -> None:
        """Undo one `pin` of these blobs."""
        for digest in digests:
            self._pins[digest] -= 1
            if self._pins[digest] <= 0:
                del self._pins[digest]

    @property
    def pinned(self) -> int:
        """How many distinct digests are pinned."""
        return len(self._pins)


class Pin:
    """A hold on blobs for in-flight work: none is evicted until `release` (or the end
    of a `with` block). Pins are counted: a blob two pins hold stays until both let go."""

    def __init__(self, digests: tuple[str, ...], release: Callable[[Pin], None]) -> None:
        self.digests = digests
        self.released = False  # set by the store, under its lock
        self._release = release

    def release(self) -> None:
        """Let the blobs go; releasing twice is harmless."""
        self._release(self)

    def __enter__(self) -> Pin:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()
