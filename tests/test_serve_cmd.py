"""``runyard serve``'s own listening socket (the rest of serve: tests/test_web_*.py)."""

from __future__ import annotations

import asyncio
import socket

from runyard.cli.serve_cmd import _listen


def test_the_listening_socket_gives_connections_tcp_nodelay():
    """serve binds its own socket: it must say TCP, or asyncio leaves TCP_NODELAY off
    and every answer on a keep-alive connection waits 40 ms for a delayed ACK."""
    listener = _listen("127.0.0.1", 0)
    try:
        assert listener.proto == socket.IPPROTO_TCP
        listener.listen()
        client = socket.create_connection(listener.getsockname())
        conn, _ = listener.accept()
        with client, conn:
            asyncio.base_events._set_nodelay(conn)  # what asyncio does to each connection
            assert conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    finally:
        listener.close()
