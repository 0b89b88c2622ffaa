"""TLS and mutual TLS for the gRPC port, with certificates reloaded without a restart.

gRPC asks for the certificate configuration at each new handshake; the files are read again
when their modification time changed, so replacing them (as certificate managers do) takes
effect for the next connection. A file that cannot be read keeps the last good configuration.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import grpc

log = logging.getLogger("broker.tls")


class CertificateFiles:
    def __init__(self, cert_file: Path, key_file: Path, client_ca_file: Path | None) -> None:
        self.cert_file = cert_file
        self.key_file = key_file
        self.client_ca_file = client_ca_file
        self._lock = threading.Lock()
        self._stamp = self._mtimes()
        self.initial = self._configuration()  # raises when a file is missing or unreadable
        self.reloads = 0

    @property
    def mutual(self) -> bool:
        return self.client_ca_file is not None

    def _paths(self) -> list[Path]:
        paths = [self.cert_file, self.key_file]
        if self.client_ca_file is not None:
            paths.append(self.client_ca_file)
        return paths

    def _mtimes(self) -> tuple[int, ...]:
        return tuple(os.stat(path).st_mtime_ns for path in self._paths())

    def _configuration(self) -> grpc.ServerCertificateConfiguration:
        pairs = [(self.key_file.read_bytes(), self.cert_file.read_bytes())]
        roots = self.client_ca_file.read_bytes() if self.client_ca_file is not None else None
        return grpc.ssl_server_certificate_configuration(pairs, root_certificates=roots)

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """Called by gRPC before a handshake: a new configuration if the files changed."""
        with self._lock:
            try:
                stamp = self._mtimes()
                if stamp == self._stamp:
                    return None
                configuration = self._configuration()
            except OSError as exc:
                log.error("certificate files unreadable; keeping the last ones: %s", exc)
                return None
            self._stamp = stamp
            self.reloads += 1
            log.info("certificate files reloaded", extra={"reloads": self.reloads})
            return configuration

    def server_credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(
            # gRPC documents None from the fetcher as "unchanged"; the stubs do not say so.
            self.initial,
            self.fetch,  # type: ignore[arg-type]
            require_client_authentication=self.mutual,
        )
