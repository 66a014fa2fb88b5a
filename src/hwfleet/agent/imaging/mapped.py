"""Windows of an image file mapped ahead of the thread that hashes them (zero-copy writes).

The writer's zero-copy path (:func:`hwfleet.agent.imaging.writer._stream_mapped`) hashes
each window of the cached file in place and ``O_DIRECT``-writes it from the mapping.
Mapping and populating 4 KiB page-cache pages costs about 0.1 s of CPU per GiB; done by
the thread that hashes, it was a quarter of that thread's work, and that thread sets the
writer's pace. This thread maps the next windows while the current one is hashed (a
scratch harness: 0.25 s per GiB against 0.30-0.33, docs/imaging.md). It is also the write
stage's :class:`~hwfleet.agent.imaging.pipeline.Releaser`: a written window is unmapped and
its slot freed, so at most ``count`` windows are ever mapped.
"""

from __future__ import annotations

import mmap
import queue
import threading

from hwfleet.agent.imaging.readers import FileReader

#: (window, its offset in the file); an OSError when a window could not be mapped (the
#: file cannot be read); None after the last window.
Ready = tuple[mmap.mmap, int] | OSError | None


class MapAhead(threading.Thread):
    """Maps ``source``'s ``length`` bytes ``window`` at a time, in order, into ``ready``."""

    def __init__(self, source: FileReader, length: int, window: int, count: int) -> None:
        super().__init__(name="image-map", daemon=True)
        self.source, self.length, self.window = source, length, window
        self.ready: queue.Queue[Ready] = queue.Queue()
        self._slots = threading.Semaphore(count)
        self._halt = threading.Event()

    def run(self) -> None:
        offset = 0
        try:
            while offset < self.length:
                self._slots.acquire()  # back-pressure: a window must be written first
                if self._halt.is_set():
                    return
                count = min(self.window, self.length - offset)
                self.ready.put((self.source.map(offset, count), offset))
                offset += count
        except OSError as exc:  # handed to the hashing thread, which names the cause
            self.ready.put(exc)
            return
        self.ready.put(None)

    def release(self, buf: mmap.mmap, /) -> None:
        """A window is written (or dropped): unmap it, let the next one be mapped."""
        buf.close()
        self._slots.release()

    def halt(self) -> None:
        """Stop mapping and unmap what was mapped but not taken."""
        self._halt.set()
        self._slots.release()  # wakes the thread if it waits for a slot
        self.join()
        while True:
            try:
                item = self.ready.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, tuple):
                item[0].close()
