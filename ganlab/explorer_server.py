"""The latent explorer over HTTP: the Flask app (the page, JSON in, PNG out), a server bound for a block, and the
latency benchmark that times slider moves against it.

Every refusal is a 4xx with a JSON message; every image answer carries a `Server-Timing` header with G's forward time,
so the browser and the benchmark can tell the generator's share of a slider move from the rest.
"""

import contextlib
import json
import socket
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from ganlab.errors import GanlabError
from ganlab.explorer import Explorer, InvalidRequest

STATIC_DIR = Path(__file__).parent / "explorer_static"
MAX_REQUEST_BYTES = 64 * 1024
SECURITY_HEADERS = {  # the page loads nothing from elsewhere: no CDN, no external fonts or scripts
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob:; style-src 'self'; script-src 'self'",
    "X-Content-Type-Options": "nosniff",
}


def create_app(explorer: Explorer) -> Flask:
    """The page and its endpoints: GET /api/state, POST /api/render, /api/interpolate, /api/save."""
    app = Flask(__name__, static_folder=str(STATIC_DIR), static_url_path="/static")
    app.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES

    @app.get("/")
    def page():
        return app.send_static_file("index.html")

    @app.get("/favicon.ico")
    def no_icon():
        return Response(status=204)

    @app.get("/api/state")
    def state():
        return jsonify(explorer.state())

    @app.post("/api/render")
    def render():
        return _png(*explorer.grid_png(explorer.parse(_json_body())))

    @app.post("/api/interpolate")
    def interpolate():
        payload = _json_body()
        exploration = explorer.parse(payload)
        return _png(*explorer.interpolation_png(exploration, *explorer.parse_pair(payload, exploration.samples)))

    @app.post("/api/save")
    def save():
        payload = _json_body()
        exploration = explorer.parse(payload)
        pair = explorer.parse_pair(payload, exploration.samples) if payload.get("from") is not None else None
        run_id, url = explorer.save(exploration, pair)
        return jsonify({"run_id": run_id, "url": url})

    @app.errorhandler(InvalidRequest)
    def refused(error: InvalidRequest):
        return jsonify({"error": str(error)}), 400

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        return jsonify({"error": f"{error.name}: {error.description}"}), error.code

    @app.errorhandler(GanlabError)
    def store_failed(error: GanlabError):  # the tracking store failed while saving: not the request's fault
        return jsonify({"error": str(error)}), 503

    @app.after_request
    def headers(response: Response) -> Response:
        response.headers.update(SECURITY_HEADERS)
        if request.path.startswith("/api/"):
            response.headers["Cache-Control"] = "no-store"
        return response

    return app


def _json_body() -> object:
    try:
        return json.loads(request.get_data(cache=False))
    except (ValueError, RecursionError) as error:  # ValueError: bad JSON, bad UTF-8, a 5000-digit number
        raise InvalidRequest(f"malformed JSON: {error}") from error


def _png(data: bytes, forward_ms: float | None) -> Response:
    response = Response(data, mimetype="image/png")
    response.headers["Server-Timing"] = ('cache;desc="from the cache"' if forward_ms is None
                                         else f'g;dur={forward_ms:.2f};desc="G forward"')
    return response


class _QuietRequestHandler(WSGIRequestHandler):
    """No log line per request (a drag makes dozens); errors are still logged."""

    def log_request(self, *args) -> None: ...


@contextlib.contextmanager
def serving(app: Flask, host: str, port: int):
    """The app on a real HTTP server (port 0: a free one) in a background thread, stopped on every way out."""
    try:  # bound here, not by werkzeug, which prints advice and exits on a port in use
        listener = socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET)
    except OSError as error:
        raise GanlabError(f"cannot listen on {host}:{port} ({error.strerror or error}); pick another --port or "
                          "--host") from error
    with listener:
        server = make_server(host, listener.getsockname()[1], app, threaded=True,
                             request_handler=_QuietRequestHandler, fd=listener.fileno())
    thread = threading.Thread(target=server.serve_forever, name="explorer-server", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def server_url(server: BaseWSGIServer) -> str:
    host = f"[{server.host}]" if ":" in server.host else server.host
    return f"http://{host}:{server.port}/"


def measure_latency(explorer: Explorer, url: str, moves: int, dim: int) -> dict[str, float]:
    """Median milliseconds of one slider move over HTTP (request, checks, G, PNG, answer) and, from the same
    requests' Server-Timing, of G's forward inside it: on a loaded machine their ratio is what holds. Each move is a
    new value of one dim, as a drag makes them, so none comes from the cache."""
    config = explorer.config
    move_ms, forward_ms = [], []
    for number in range(moves + 2):  # the first two warm up
        amount = -config.slider_range + 2 * config.slider_range * (number + 0.5) / (moves + 2)
        exploration = {"base": config.z_seed, "samples": config.samples,
                       "moves": [{"family": "dim", "index": dim, "mode": "offset", "amount": amount}]}
        started = time.perf_counter()
        with urllib.request.urlopen(urllib.request.Request(url + "api/render", json.dumps(exploration).encode(),
                                                           {"Content-Type": "application/json"})) as answer:
            answer.read()
            timing = answer.headers["Server-Timing"]
        elapsed_ms = 1000 * (time.perf_counter() - started)
        if number >= 2:
            move_ms.append(elapsed_ms)
            forward_ms.append(float(timing.split("dur=")[1].split(";")[0]))
    return {"move_ms": float(np.median(move_ms)), "move_ms_p90": float(np.percentile(move_ms, 90)),
            "forward_ms": float(np.median(forward_ms)), "moves": moves, "samples": config.samples}
