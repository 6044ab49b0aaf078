"""VIRQ_TBUF: the producer's "buffer half full" wake-up, as a named FIFO.

Xen sends ``VIRQ_TBUF`` (a global virtual IRQ, port bound by the consumer with
``xenevtchn_bind_virq``) once per upward crossing of half a CPU's buffer.  The model uses a
FIFO in the file system, whose path is stored in the control block so that any process can
bind it:

* the consumer ``bind()``s: opens the FIFO read+write (so it never sees end-of-file) and polls
  its descriptor - exactly xentrace's ``poll()`` on the event-channel fd with a timeout;
* the producer writes one byte per notification, non-blocking.  With no consumer bound
  (``ENXIO``) or a full pipe (``EAGAIN``, i.e. a notification already pending) the byte is
  dropped - an unbound VIRQ is lost and a pending event-channel bit does not count.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select


class VirqSender:
    """Producer side: ``send()`` raises the VIRQ (never blocks, never raises)."""

    def __init__(self, path: str):
        self.path = path
        self._fd: int | None = None

    def send(self) -> bool:
        """Notify a bound consumer; ``False`` if nobody is bound or one is already pending."""
        if self._fd is None:
            try:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:
                return False
        try:
            os.write(self._fd, b"\x04")  # VIRQ_TBUF = 4
            return True
        except OSError as e:
            if e.errno != errno.EAGAIN:
                self.close()
            return False

    def close(self) -> None:
        """Close the write end."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


class VirqReceiver:
    """Consumer side: a bound VIRQ_TBUF port.  ``fileno()`` can be polled directly."""

    def __init__(self, path: str):
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)

    def fileno(self) -> int:
        """The descriptor to poll for readability."""
        return self._fd

    def wait(self, timeout: float | None) -> bool:
        """Wait up to ``timeout`` seconds; ``True`` if a notification arrived (and drain it).

        Like xentrace's ``wait_for_event_or_timeout``, a signal (``EINTR``) simply returns.
        """
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        try:
            ready = poller.poll(None if timeout is None else int(timeout * 1000))
        except InterruptedError:
            return False
        if not ready:
            return False
        return self.drain()

    def drain(self) -> bool:
        """Consume pending notifications; ``True`` if there were any."""
        got = False
        while True:
            try:
                chunk = os.read(self._fd, 4096)
            except BlockingIOError:
                return got
            if not chunk:
                return got
            got = True

    def close(self) -> None:
        """Unbind."""
        with contextlib.suppress(OSError):
            os.close(self._fd)
