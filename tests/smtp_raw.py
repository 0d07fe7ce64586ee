"""A tiny raw-socket SMTP driver for protocol edge cases no stock client produces
(pipelined bursts, BDAT, smuggling attempts, PROXY headers)."""

import socket
import time


class Raw:
    def __init__(self, port: int, prefix: bytes = b"", timeout: float = 10.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if prefix:
            self.sock.sendall(prefix)
        self.buf = b""
        self.greeting = self.reply()

    def send(self, data: bytes):
        self.sock.sendall(data)

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(f"connection closed; buffered {self.buf!r}")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def reply(self) -> str:
        """One complete (possibly multi-line) reply, returned as its last line."""
        while True:
            line = self.line().decode()
            if len(line) < 4 or line[3] != "-":
                return line

    def cmd(self, command: str) -> str:
        self.send(command.encode() + b"\r\n")
        return self.reply()

    def closed(self, timeout: float = 5.0) -> bool:
        self.sock.settimeout(timeout)
        deadline = time.time() + timeout
        try:
            while time.time() < deadline:
                if not self.sock.recv(65536):
                    return True
        except (ConnectionResetError, socket.timeout):
            return True
        return False

    def close(self):
        self.sock.close()
