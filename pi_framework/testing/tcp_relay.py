"""A TCP relay on 127.0.0.1 that a test switches off and on: a service that goes away and comes back."""

from __future__ import annotations

import socket
import threading


def free_port() -> int:
    """A port on 127.0.0.1 where nothing listens (yet)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class TcpRelay:
    """Forwards ``127.0.0.1:port`` to *target* while on; :meth:`off` refuses new connections and drops open ones.

    Give the code under test ``127.0.0.1:<relay.port>`` instead of the service's address; *port* fixes it in advance
    (a relay that starts listening later, on the address a worker was already given).
    """

    def __init__(self, target: tuple[str, int], port: int | None = None) -> None:
        self.target = target
        self.port = port or free_port()
        self._server: socket.socket | None = None
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()

    def on(self) -> TcpRelay:
        if self._server is None:
            self._server = socket.create_server(("127.0.0.1", self.port), reuse_port=True)
            threading.Thread(target=self._accept, args=(self._server,), daemon=True).start()
        return self

    def off(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        with self._lock:
            for connection in self._open:
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self._open.clear()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
