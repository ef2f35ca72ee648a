"""TCP ports on 127.0.0.1 held by the test for as long as they are needed.

Choosing a port by binding port 0 and closing the socket leaves a window in which another process
(the other pytest-xdist worker, an outgoing connection of any job on the machine) can take the port
before the server meant for it binds it, or before a test relies on nothing listening there. Here
the test's socket stays bound, never listening, until the test is done with the port:

- ``refusing_port()``: nothing can listen on it, so every connection is refused (the kernel answers
  with a reset): a tracking server that is down, whatever else runs on the machine.
- ``reserved_ports(count)``: bound with SO_REUSEADDR, which lets a server that sets it too (uvicorn
  under `mlflow server`, gRPC under TensorFlow's cluster) bind and listen on the port by its number,
  while the kernel hands it to nothing else: not to a bind to port 0, not to an outgoing connection.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager


def _bound_socket(reuse_address: bool) -> socket.socket:
    sock = socket.socket()
    if reuse_address:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextmanager
def refusing_port() -> Iterator[int]:
    """A port on which connections are refused until the block ends."""
    with _bound_socket(reuse_address=False) as sock:
        yield sock.getsockname()[1]


@contextmanager
def reserved_ports(count: int) -> Iterator[list[int]]:
    """``count`` distinct ports kept for a server that binds them with SO_REUSEADDR, until the block ends."""
    with ExitStack() as stack:
        sockets = [stack.enter_context(_bound_socket(reuse_address=True)) for _ in range(count)]
        yield [sock.getsockname()[1] for sock in sockets]
