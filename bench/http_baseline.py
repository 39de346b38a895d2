"""The architecture pganalytics_ml replaces, rebuilt fairly for a benchmark: a small HTTP service in Python.

Per request it reads the statement's recent history from PostgreSQL with psycopg, builds the same
features and runs the same model as the extension (its own package, through PsycopgPlpy), and
answers JSON. One connection per server thread; the model is loaded once at start.

    python bench/http_baseline.py --dsn ... --server-id ... --port 8099
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python_pkg"))

from pganalytics_ml.forecasting import forecasts
from plpy_adapter import PsycopgPlpy

_local = threading.local()


def make_handler(dsn: str, server_id: str) -> type[BaseHTTPRequestHandler]:
    class Predict(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            if not hasattr(_local, "plpy"):
                _local.plpy = PsycopgPlpy(psycopg.connect(dsn, autocommit=True))
            query_hash = int(parse_qs(urlparse(self.path).query)["query_hash"][0])
            forecast = forecasts.compute(_local.plpy, server_id, [query_hash])
            body = json.dumps(
                {
                    "query_hash": query_hash,
                    "predicted_execution_time_ms": forecast.predicted_ms[0],
                    "range": {"min": forecast.lower_ms[0], "max": forecast.upper_ms[0]},
                    "confidence": forecast.confidence[0],
                    "source": "model" if forecast.from_model[0] else "baseline",
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    return Predict


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a load generator hanging up is not an error
            super().handle_error(request, client_address)


def keep_model_in_memory(plpy: PsycopgPlpy, server_id: str) -> None:
    """Loads the active model once, as a service would. The package's own loader re-reads the model row and
    checks its signature on every call, which is right inside the database and unfair to a service."""
    model = forecasts._usable_model(plpy, server_id)
    forecasts._usable_model = lambda plpy, server_id: model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--server-id", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--warmup-hash", type=int, required=True, help="a known statement, to load the model")
    args = parser.parse_args()
    with psycopg.connect(args.dsn, autocommit=True) as conn:
        keep_model_in_memory(PsycopgPlpy(conn), args.server_id)
        forecasts.compute(PsycopgPlpy(conn), args.server_id, [args.warmup_hash])
    server = QuietServer(("127.0.0.1", args.port), make_handler(args.dsn, args.server_id))
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
