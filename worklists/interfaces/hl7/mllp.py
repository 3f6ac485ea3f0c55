"""The MLLP listener: TCP (TLS as an option), one thread per connection, frames 0x0B … 0x1C 0x0D.

A frame larger than the limit, or one begun and not finished in time, closes its connection with a
log line; a connection past the limit is closed at once. One connection's trouble never reaches
another: each has its own thread, and a fault in one is logged and ends that one only."""

import logging
import socket
import socketserver
import ssl
import threading
import time

from django.db import close_old_connections, connection

from .intake import Senders, message_receive

log = logging.getLogger(__name__)

START, END = b"\x0b", b"\x1c\x0d"


class Limits:
    def __init__(self, max_bytes=1 << 20, frame_timeout=30.0, idle_timeout=600.0, max_connections=50):
        self.max_bytes, self.frame_timeout = max_bytes, frame_timeout
        self.idle_timeout, self.max_connections = idle_timeout, max_connections


class Connection(socketserver.BaseRequestHandler):
    def handle(self):
        peer = f"{self.client_address[0]}:{self.client_address[1]}"
        if not self.server.slots.acquire(blocking=False):
            log.warning(
                "HL7 connection from %s closed: %d connections are open already",
                peer,
                self.server.limits.max_connections,
            )
            return
        try:
            if isinstance(self.request, ssl.SSLSocket) and not self.handshake(peer):
                return
            close_old_connections()
            self.converse(peer)
        except Exception:
            log.exception("HL7 connection from %s ended by an error", peer)
        finally:
            self.server.slots.release()
            connection.close()  # this thread's database connection

    def handshake(self, peer):
        # In the connection's own thread, so that a slow or failing client never holds up accept.
        self.request.settimeout(self.server.limits.frame_timeout)
        try:
            self.request.do_handshake()
        except (ssl.SSLError, OSError) as exc:
            log.warning("HL7 connection from %s closed: no TLS handshake (%s)", peer, exc)
            return False
        return True

    def converse(self, peer):
        sock, limits = self.request, self.server.limits
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buffer, started = bytearray(), None  # started: when the frame being read began
        senders = Senders()
        while True:
            if started is None:
                timeout = limits.idle_timeout
            else:
                timeout = limits.frame_timeout - (time.monotonic() - started)
                if timeout <= 0:
                    log.warning(
                        "HL7 connection from %s closed: half a frame, unfinished after %s s", peer, limits.frame_timeout
                    )
                    return
            sock.settimeout(timeout)
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                if started is not None:
                    log.warning(
                        "HL7 connection from %s closed: half a frame, unfinished after %s s", peer, limits.frame_timeout
                    )
                else:
                    log.info("HL7 connection from %s closed: idle for %s s", peer, limits.idle_timeout)
                return
            except OSError as exc:
                log.info("HL7 connection from %s lost: %s", peer, exc)
                return
            if not chunk:
                if started is not None:
                    log.warning("HL7 connection from %s closed by the sender in the middle of a frame", peer)
                return
            buffer += chunk
            while True:
                if started is None:
                    begin = buffer.find(START)
                    if begin < 0:
                        if buffer.strip():
                            log.warning("HL7 connection from %s: %d bytes outside a frame ignored", peer, len(buffer))
                        buffer.clear()
                        break
                    if buffer[:begin].strip():
                        log.warning("HL7 connection from %s: %d bytes outside a frame ignored", peer, begin)
                    del buffer[: begin + 1]
                    started = time.monotonic()
                end = buffer.find(END)
                if end < 0:
                    if len(buffer) > limits.max_bytes:
                        log.warning("HL7 connection from %s closed: a frame over %d bytes", peer, limits.max_bytes)
                        return
                    break
                if end > limits.max_bytes:
                    log.warning("HL7 connection from %s closed: a frame over %d bytes", peer, limits.max_bytes)
                    return
                payload = bytes(buffer[:end])
                del buffer[: end + len(END)]
                started = None
                ack = message_receive(payload, peer, senders)
                try:
                    sock.sendall(START + ack + END)
                except OSError as exc:
                    # Done and recorded: a repeat of the message gets this ACK again.
                    log.warning("HL7 connection from %s lost before its ACK was sent: %s", peer, exc)
                    return


class Listener(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address, limits: Limits, tls: ssl.SSLContext | None = None):
        self.limits, self.tls = limits, tls
        self.slots = threading.BoundedSemaphore(limits.max_connections)
        super().__init__(address, Connection)

    def get_request(self):
        sock, address = super().get_request()
        if self.tls is not None:
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, address

    def handle_error(self, request, client_address):
        log.exception("HL7 connection from %s failed", client_address)
